namespace Compress.Spec.Methods
{
    /// <summary><c>prune.method: "woodfisher"</c> (algorithms.md §3): global OBS with the inverse empirical Fisher.</summary>
    public static class WoodFisherMethod
    {
        public const string Name = "woodfisher";

        public static readonly MethodDescriptor Descriptor = new MethodDescriptor(
            Name,
            StepKind.Prune,
            "global OBS with the inverse empirical Fisher",
            MethodData.Gradients,
            ModelFormat.Onnx | ModelFormat.TorchScript,
            options: new[]
            {
                MethodOption.Integer("blockSize", 64, 8, 4096, "weights per Fisher block"),
                MethodOption.Number("damping", 1e-5, 1e-9, 1, "λ"),
                MethodOption.Integer("steps", 4, 1, 32, "pruning sub-steps, each with a fresh inverse Fisher", gloss: "Fisher recomputations"),
            },
            opTypes: PruneOps.Weighted,
            touches: PruneOps.Weighted);
    }
}
