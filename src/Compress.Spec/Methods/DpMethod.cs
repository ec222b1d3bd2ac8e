namespace Compress.Spec.Methods
{
    /// <summary><c>allocate.method: "dp"</c> (algorithms.md §12): the exact knapsack by dynamic programming over the discretised cost.</summary>
    public static class DpMethod
    {
        public const string Name = "dp";

        public static readonly MethodDescriptor Descriptor = new MethodDescriptor(
            Name,
            StepKind.Allocate,
            "per-layer choices from the error database by an exact dynamic program (OBC / SPDY)",
            MethodData.Activations,
            ModelFormat.Onnx,
            opTypes: PruneOps.Weighted,
            touches: System.Array.Empty<string>());
    }

    /// <summary><c>allocate.method: "anneal"</c>, alias <c>"qubo"</c> (algorithms.md §6): the same problem as a QUBO, by simulated annealing.</summary>
    public static class AnnealMethod
    {
        public const string Name = "anneal";

        public static readonly MethodDescriptor Descriptor = new MethodDescriptor(
            Name,
            StepKind.Allocate,
            "per-layer choices as a QUBO (one-hot and budget penalties) by seeded simulated annealing",
            MethodData.Activations,
            ModelFormat.Onnx,
            aliases: new[] { "qubo" },
            opTypes: PruneOps.Weighted,
            touches: System.Array.Empty<string>());
    }
}
