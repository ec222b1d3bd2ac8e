namespace Compress.Spec.Methods
{
    /// <summary><c>prune.method: "obs"</c>, alias <c>"sparsegpt"</c> (algorithms.md §4): layer-wise OBS with the input Hessian.</summary>
    public static class ObsMethod
    {
        public const string Name = "obs";

        /// <summary>Option key: fit each layer to the uncompressed model's response (‖WX − ŴX̃‖) rather than to the pruned model's (‖WX̃ − ŴX̃‖).</summary>
        public const string DenseTargets = "denseTargets";

        /// <summary>Option key: shrink each layer's Hessian towards its diagonal, H ← (1 − s)·H + s·diag(H), before the damping.</summary>
        public const string Shrinkage = "shrinkage";

        /// <summary>
        /// The default shrinkage: none. 0.3 measured one shot from 512 images against 0: Fashion CNN 95 % 87.97 → 88.94 %, MLP
        /// 90 % 86.26 → 87.03 %, row transformer 80 % 84.99 → 86.51 %, ResNet-20 70 % 92.19 → 92.33 %; but ResNet-20 at 60 %
        /// per layer from 64 distilled inputs fell from within 3 points to 86.37 % (algorithms.md §4).
        /// </summary>
        public const double DefaultShrinkage = 0;

        public static readonly MethodDescriptor Descriptor = new MethodDescriptor(
            Name,
            StepKind.Prune,
            "layer-wise OBS with the input Hessian (SparseGPT)",
            MethodData.Activations,
            ModelFormat.Onnx,
            aliases: new[] { "sparsegpt" },
            options: new[]
            {
                MethodOption.Integer("blockSize", 128, 16, 1024, "columns per block"),
                MethodOption.Number("damping", 0.01, 1e-9, 1, "fraction of the mean Hessian diagonal"),
                MethodOption.Number(Shrinkage, DefaultShrinkage, 0, 0.9, "shrink each layer's Hessian towards its diagonal by this fraction, H ← (1 − s)·H + s·diag(H), before the damping"),
                MethodOption.Boolean(DenseTargets, true, "fit each layer to the uncompressed model's outputs (corrects the error of the layers pruned before)"),
            },
            opTypes: PruneOps.Weighted,
            touches: PruneOps.Weighted,
            patterns: true);
    }
}
