namespace Compress.Spec.Methods
{
    /// <summary>
    /// <c>factorize.method: "svd"</c> (algorithms.md §16): activation-aware SVD — W·L with C = E[xxᵀ] = LLᵀ from the
    /// calibration data, truncated, multiplied back by L⁻¹ (SVD-LLM) — into two smaller Gemm/MatMul.
    /// </summary>
    public static class SvdMethod
    {
        public const string Name = "svd";

        public static readonly string[] Ops = { "Gemm", "MatMul" };

        public static readonly MethodDescriptor Descriptor = new MethodDescriptor(
            Name,
            StepKind.Factorize,
            "activation-aware SVD (whitened by the input covariance, SVD-LLM) into two smaller Gemm/MatMul",
            MethodData.Activations,
            ModelFormat.Onnx,
            opTypes: Ops,
            touches: Ops);
    }
}
