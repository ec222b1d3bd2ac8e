namespace Compress.Core.Plans;

/// <summary>Unstructured sparsity, or N weights kept in every M consecutive ones along the input axis.</summary>
public readonly record struct SparsityPattern(int N, int M)
{
    public static readonly SparsityPattern Unstructured = new(0, 0);

    public bool IsUnstructured => N == 0;

    public override string ToString() => IsUnstructured ? "unstructured" : $"{N}:{M}";
}

/// <summary>Who set a layer's planned values.</summary>
public enum PlanSource
{
    /// <summary>The step's own values, the same for every layer (the default).</summary>
    Step,

    /// <summary>The step's pass, sharing the step's global target out over the layers (global scope).</summary>
    GlobalShares,

    /// <summary>An allocation (a per-layer budget chosen before the step runs).</summary>
    Allocation,
}

/// <summary>
/// What one step is to do to one layer: its sparsity and pattern (prune steps), its bits (quantize steps) or its rank (factorize steps). Filled from
/// the step's values by default, written per layer by an allocation when there is one, read by the step's pass, and
/// reported with the layer.
/// </summary>
public sealed record LayerPlan(string Weight, PlanSource Source)
{
    /// <summary>Fraction of the layer's weights to prune; null when the step does not prune.</summary>
    public double? Sparsity { get; init; }

    public SparsityPattern Pattern { get; init; } = SparsityPattern.Unstructured;

    /// <summary>Bits per weight the step stores; null when the step does not quantize.</summary>
    public int? Bits { get; init; }

    /// <summary>The rank a factorize step gives the layer (0: the layer stays whole); null when the step chooses it itself.</summary>
    public long? Rank { get; init; }
}
