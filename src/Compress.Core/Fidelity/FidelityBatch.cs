namespace Compress.Core.Fidelity;

/// <summary>
/// One batch of one output from the original (<see cref="Original"/>) and the compressed model (<see cref="Compressed"/>),
/// row-major with <see cref="Shape"/>. Samples [<see cref="Start"/>, Start + <see cref="Count"/>) of the data set.
/// <see cref="Valid"/>, when not empty, holds one flag per (sample, position) of a <c>[N, T, …]</c> output whose
/// model took an attention mask: positions flagged false are padding and are left out of every metric.
/// </summary>
public readonly ref struct FidelityBatch(ReadOnlySpan<float> original, ReadOnlySpan<float> compressed, IReadOnlyList<long> shape, int start, int count, ReadOnlySpan<bool> valid)
{
    public ReadOnlySpan<float> Original { get; } = original;

    public ReadOnlySpan<float> Compressed { get; } = compressed;

    public IReadOnlyList<long> Shape { get; } = shape;

    public int Start { get; } = start;

    public int Count { get; } = count;

    public ReadOnlySpan<bool> Valid { get; } = valid;

    /// <summary>Whether axis 0 is the batch axis (an output like an RNN state <c>[2, N, H]</c> is one value set per batch).</summary>
    public bool BatchFirst => Shape.Count > 0 && Shape[0] == Count;

    /// <summary>Values per sample (the whole batch counts as one sample when axis 0 is not the batch).</summary>
    public int SampleSize => BatchFirst ? Original.Length / Count : Original.Length;

    public int Samples => BatchFirst ? Count : 1;

    /// <summary>Values per masked position (D of <c>[N, T, D]</c>), or 0 when no mask applies.</summary>
    public int PositionSize => Valid.IsEmpty ? 0 : Original.Length / Valid.Length;

    /// <summary>Whether value <paramref name="index"/> of the batch counts (false only for padding positions).</summary>
    public bool Counts(int index) => Valid.IsEmpty || Valid[index / PositionSize];
}
