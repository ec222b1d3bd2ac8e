namespace Compress.Spec.Methods
{
    /// <summary><c>prune.method: "obs"</c>, alias <c>"sparsegpt"</c> (algorithms.md §4): layer-wise OBS with the input Hessian.</summary>
    public static class ObsMethod
    {
        public const string Name = "obs";

        /// <summary>Option key: fit each layer to the uncompressed model's response (‖WX − ŴX̃‖) rather than to the pruned model's (‖WX̃ − ŴX̃‖).</summary>
        public const string DenseTargets = "denseTargets";

        /// <summary>
        /// Option key: shrink the Hessian of each layer with fewer calibration rows than inputs towards its diagonal,
        /// H ← (1 − s)·H + s·diag(H), before the damping (layers the rows determine are left as they are).
        /// </summary>
        public const string Shrinkage = "shrinkage";

        /// <summary>
        /// The default shrinkage of a rank-deficient layer's Hessian. One shot from 512 images: Fashion CNN 95 % (fc1: 512
        /// rows for 1,568 inputs) 87.97 → 88.94 % at 0.3 on every layer; on the rank-deficient layers alone see
        /// algorithms.md §4.
        /// </summary>
        public const double DefaultShrinkage = 0.3;

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
                MethodOption.Number(Shrinkage, DefaultShrinkage, 0, 0.9, "shrink the Hessian of each layer with fewer calibration rows than inputs towards its diagonal by this fraction, H ← (1 − s)·H + s·diag(H), before the damping (0: none)"),
                MethodOption.Boolean(DenseTargets, true, "fit each layer to the uncompressed model's outputs (corrects the error of the layers pruned before)"),
            },
            opTypes: PruneOps.Weighted,
            touches: PruneOps.Weighted,
            patterns: true);
    }
}
