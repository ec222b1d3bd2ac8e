namespace Compress.Core.Allocation;

/// <summary>
/// The bytes the writer stores for one layer's weight compressed one way, as <c>SparseStorage</c> and the quantizers
/// write it: the smallest of dense, a bitmask (the nonzero values plus one bit per weight) and a sparse initializer
/// (values plus int64 indices); MatMulNBits blocks (weight-only 4 or 8 bits) store every weight packed whatever its
/// value, with a float scale per block of 32. Per-channel scales of int8 weights count four bytes per row.
/// </summary>
public static class StoredBytes
{
    public const int NBitsBlock = 32;

    /// <param name="weights">Elements of the weight.</param>
    /// <param name="rows">Output channels (one scale each when quantized per channel).</param>
    /// <param name="weightOnly">Stored as MatMulNBits blocks (no sparse storage).</param>
    /// <summary>The graph a bitmask adds (its count and shape, five rebuilding nodes and their names), about.</summary>
    public const long BitmaskNodes = 400;

    /// <param name="weights">Elements of the weight.</param>
    /// <param name="rows">Output channels.</param>
    /// <param name="perRow">Bytes each output channel adds when quantized (scales, zero points, a static int8 bias's scale and zero point).</param>
    /// <param name="weightOnly">Stored as MatMulNBits blocks (no sparse storage).</param>
    public static long Of(long weights, long rows, double sparsity, int bits, bool weightOnly = false, int perRow = 5)
    {
        if (weightOnly && bits <= 8)
        {
            var blocks = (weights + NBitsBlock - 1) / NBitsBlock;
            return (weights * bits + 7) / 8 + blocks * 4;
        }

        var scales = bits <= 8 ? rows * perRow : 0;
        var dense = weights * bits / 8;
        var kept = (long)Math.Round(weights * (1 - sparsity));
        var bitmask = kept * bits / 8 + (weights + 7) / 8 + BitmaskNodes;
        var sparse = kept * (bits / 8 + 8) + BitmaskNodes;
        return Math.Min(dense, Math.Min(bitmask, sparse)) + scales;
    }

    /// <summary>Bytes per output channel a quantize scheme adds beyond the float bias the source already had.</summary>
    public static int PerRow(string? scheme) => scheme switch
    {
        Compress.Spec.Methods.QuantizeSchemes.Static => 13, // weight scale and zero point; the int32 bias's scale and zero point
        Compress.Spec.Methods.QuantizeSchemes.Dynamic => 5,
        _ => 0,
    };
}
