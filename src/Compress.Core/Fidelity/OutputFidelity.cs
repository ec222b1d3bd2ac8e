namespace Compress.Core.Fidelity;

/// <summary>How close one output of the compressed model stays to the original's. Figures a kind does not measure are null.</summary>
public sealed record OutputFidelity(string Name, OutputKind Kind, IReadOnlyList<long> Shape)
{
    /// <summary>Top-1 accuracy against labels (class scores, one prediction per sample, labels given).</summary>
    public double? OriginalAccuracy { get; init; }

    public double? CompressedAccuracy { get; init; }

    /// <summary>Top-1 agreement with the original over every prediction (class scores).</summary>
    public double? Agreement { get; init; }

    public long Predictions { get; init; }

    /// <summary>Mean over samples of cos(y, ŷ), each sample's values flattened (padding positions left out).</summary>
    public double? MeanCosine { get; init; }

    /// <summary>The 1st percentile of the per-sample cosines: the worst samples, which a mean hides.</summary>
    public double? P1Cosine { get; init; }

    /// <summary>10·log10(Σ y² / Σ (y − ŷ)²) over all values (padding left out); +∞ when identical.</summary>
    public double SqnrDb { get; init; }

    public double? AccuracyDrop => OriginalAccuracy - CompressedAccuracy;
}
