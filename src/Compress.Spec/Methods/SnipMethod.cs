namespace Compress.Spec.Methods
{
    /// <summary><c>prune.method: "snip"</c> (algorithms.md §2): connection sensitivity |w·∂L/∂w| on one minibatch.</summary>
    public static class SnipMethod
    {
        public const string Name = "snip";

        public static readonly MethodDescriptor Descriptor = new MethodDescriptor(
            Name,
            StepKind.Prune,
            "|w·g|",
            MethodData.Gradients,
            ModelFormat.Onnx | ModelFormat.TorchScript,
            opTypes: PruneOps.Weighted,
            touches: PruneOps.Weighted);
    }
}
