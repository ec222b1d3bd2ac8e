namespace Compress.Spec.Methods
{
    /// <summary>
    /// <c>factorize.method: "svd"</c> (algorithms.md §16): activation-aware SVD — W·L with C = E[xxᵀ] = LLᵀ from the
    /// calibration data (a Conv's im2col patches), truncated, multiplied back by L⁻¹ (SVD-LLM) — into two smaller
    /// Gemm/MatMul, or a Conv into two Convs (k×k to rank r then 1×1, or kh×1 then 1×kw).
    /// </summary>
    public static class SvdMethod
    {
        public const string Name = "svd";

        public static readonly string[] Ops = { "Conv", "Gemm", "MatMul" };

        public static readonly MethodDescriptor Descriptor = new MethodDescriptor(
            Name,
            StepKind.Factorize,
            "activation-aware SVD (whitened by the input covariance, SVD-LLM) into two smaller Gemm/MatMul, or a Conv into two Convs (k×k to rank r then 1×1, or kh×1 then 1×kw)",
            MethodData.Activations,
            ModelFormat.Onnx,
            opTypes: Ops,
            touches: Ops);
    }
}
