namespace Compress.Spec.Methods
{
    /// <summary>
    /// <c>prune.method: "wanda"</c> (algorithms.md §12): |w|·‖x‖ of each weight and its input's norm over the calibration
    /// data, compared within each output row; no weight update.
    /// </summary>
    public static class WandaMethod
    {
        public const string Name = "wanda";

        public static readonly MethodDescriptor Descriptor = new MethodDescriptor(
            Name,
            StepKind.Prune,
            "|w|·‖x‖ with the input's norm over the calibration data, per output row (Wanda)",
            MethodData.Activations,
            ModelFormat.Onnx,
            opTypes: PruneOps.Weighted,
            touches: PruneOps.Weighted,
            patterns: true);
    }
}
