namespace Compress.Spec.Methods
{
    /// <summary><c>prune.method: "magnitude"</c> (algorithms.md §1): the smallest |w|, per layer or by scale-free LAMP scores globally.</summary>
    public static class MagnitudeMethod
    {
        public const string Name = "magnitude";

        public static readonly MethodDescriptor Descriptor = new MethodDescriptor(
            Name,
            StepKind.Prune,
            "the smallest |w| (globally by scale-free LAMP scores)",
            MethodData.None,
            ModelFormat.All,
            opTypes: PruneOps.Weighted,
            touches: PruneOps.Weighted,
            patterns: true);
    }
}
