using System.Globalization;

namespace Compress.Core.Plans;

/// <summary>How a layer's weight values are encoded after the passes so far.</summary>
public enum WeightEncoding
{
    Float32,
    Float16,

    /// <summary>int8 behind a DequantizeLinear (static quantization).</summary>
    QdqInt8,

    /// <summary>int8 read by MatMulInteger / DynamicQuantizeLinear (dynamic quantization).</summary>
    DynamicInt8,

    /// <summary>int4/int8 blocks of <c>com.microsoft.MatMulNBits</c> (weight-only).</summary>
    MatMulNBits,

    /// <summary>An embedding table's rows as int8 (one scale per row) or int4 blocks of <c>com.microsoft.GatherBlockQuantized</c>.</summary>
    GatherBlockQuantized,

    /// <summary>
    /// int4/int8 blocks stored packed (float16 scales) behind a chain of standard ops ONNX Runtime folds back into the
    /// float32 weight at load (weight-only <c>form</c> <c>float</c>): the integer file, float speed and memory.
    /// </summary>
    UnpackedBlocks,

    /// <summary>
    /// int4/int8 blocks stored packed as for <see cref="UnpackedBlocks"/>, behind a chain ONNX Runtime folds into an int8
    /// weight with one scale per output column at load, read by <c>DynamicQuantizeMatMul</c> (weight-only <c>form</c>
    /// <c>int8</c>): the integer file, int8 arithmetic at run time.
    /// </summary>
    Int8AtLoad,

    /// <summary>Float32 values drawn from a per-layer codebook of 2^bits (k-means weight sharing, <c>pack</c>).</summary>
    SharedCodebook,
}

/// <summary>How the weight's zeros are stored: as they are, as a bitmask of nonzeros, or as a sparse initializer.</summary>
public enum SparseLayout
{
    Dense,
    Bitmask,
    Sparse,
}

/// <summary>
/// A layer's stored weight, typed: its encoding and bits, the grid's layout (block, symmetry, per-tensor or
/// per-channel), the method that chose the values on the grid, and how zeros are stored. Shown in reports as one
/// line (<see cref="ToString"/>), e.g. <c>int4 MatMulNBits block 32 (GPTQ) bitmask</c>.
/// </summary>
public sealed record WeightFormat(WeightEncoding Encoding, int Bits)
{
    public static readonly WeightFormat Float32 = new(WeightEncoding.Float32, 32);

    /// <summary>MatMulNBits: weights per block along the input axis; GatherBlockQuantized: along the row (null: one scale per row).</summary>
    public int? BlockSize { get; init; }

    /// <summary>MatMulNBits: zero points stored (asymmetric grid).</summary>
    public bool Asymmetric { get; init; }

    /// <summary>QDQ: one scale for the whole tensor instead of one per output channel.</summary>
    public bool PerTensor { get; init; }

    /// <summary>The method that put the values on the grid when it is not round-to-nearest, e.g. <c>GPTQ</c>.</summary>
    public string? Rounding { get; init; }

    public SparseLayout Layout { get; init; } = SparseLayout.Dense;

    public override string ToString()
    {
        var text = Encoding switch
        {
            WeightEncoding.Float32 => "float32",
            WeightEncoding.Float16 => "float16",
            WeightEncoding.DynamicInt8 => "int8 dynamic",
            WeightEncoding.SharedCodebook => string.Create(CultureInfo.InvariantCulture, $"{Bits}-bit codebook"),
            WeightEncoding.QdqInt8 => PerTensor ? "int8 QDQ per-tensor" : "int8 QDQ per-channel",
            WeightEncoding.MatMulNBits => string.Create(CultureInfo.InvariantCulture, $"int{Bits} MatMulNBits block {BlockSize}") + (Asymmetric ? " asymmetric" : ""),
            WeightEncoding.UnpackedBlocks => string.Create(CultureInfo.InvariantCulture, $"int{Bits} block {BlockSize} unpacked at load") + (Asymmetric ? " asymmetric" : ""),
            WeightEncoding.Int8AtLoad => string.Create(CultureInfo.InvariantCulture, $"int{Bits} block {BlockSize} as int8 at load") + (Asymmetric ? " asymmetric" : ""),
            WeightEncoding.GatherBlockQuantized => string.Create(CultureInfo.InvariantCulture, $"int{Bits} GatherBlockQuantized {(BlockSize is { } size ? $"block {size}" : "per row")}")
                + (Asymmetric ? " asymmetric" : ""),
            _ => Encoding.ToString(),
        };
        return text + (Rounding is null ? "" : $" ({Rounding})") + Layout switch
        {
            SparseLayout.Bitmask => " bitmask",
            SparseLayout.Sparse => " sparse",
            _ => "",
        };
    }
}
