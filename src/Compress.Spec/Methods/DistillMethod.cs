namespace Compress.Spec.Methods
{
    /// <summary>
    /// <c>finetune.method: "distill"</c> (algorithms.md §17): knowledge distillation from the uncompressed model on
    /// unlabeled inputs (cross-entropy added where the data has labels), masks fixed, quantized weights trained on their
    /// grids by a straight-through estimator.
    /// </summary>
    public static class DistillMethod
    {
        public const string Name = "distill";

        /// <summary>The operators whose weights train: those the steps compress (MatMulNBits counts as MatMul).</summary>
        public static readonly string[] Ops = { "Conv", "Gemm", "MatMul" };

        public static readonly MethodDescriptor Descriptor = new MethodDescriptor(
            Name,
            StepKind.Finetune,
            "knowledge distillation from the original model (KL on class scores, MSE or cosine on features), masks fixed, quantized weights by a straight-through estimator",
            MethodData.Activations,
            ModelFormat.Onnx | ModelFormat.TorchScript | ModelFormat.TorchSharp,
            opTypes: Ops,
            touches: Ops);
    }
}
