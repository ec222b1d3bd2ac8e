using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Passes.Quantization;

/// <summary>
/// The b-bit integer grid of a group of weights, as MatMulNBits stores it: x̂ = s·(q − z), q in [0, 2^b − 1].
/// Symmetric: s = max|x| / (2^(b−1) − 1), z = 2^(b−1). Asymmetric min-max (algorithms.md §4): xmin = min(min x, 0),
/// xmax = max(max x, 0), s = (xmax − xmin) / (2^b − 1), z = round(−xmin / s). One fit per slice along <c>dim</c>.
/// <c>NarrowRange</c> leaves out the lowest code (symmetric int8 QDQ weights take −127…127, not −128).
/// </summary>
public readonly record struct IntegerGrid(int Bits, bool Symmetric, bool NarrowRange = false)
{
    public int Levels => (1 << Bits) - 1;

    private int Lowest => NarrowRange ? 1 : 0;

    /// <summary>Scales and zero points (as float) over <paramref name="dim"/>, kept as a size-1 dimension.</summary>
    public (Tensor Scales, Tensor Zeros) Fit(Tensor x, long dim)
    {
        if (Symmetric)
        {
            var half = 1 << (Bits - 1);
            var scales = (x.abs().amax([dim], keepdim: true) / (half - 1)).clamp_min(1e-12);
            return (scales, full_like(scales, half));
        }

        var lo = x.amin([dim], keepdim: true).clamp_max(0);
        var hi = x.amax([dim], keepdim: true).clamp_min(0);
        var s = ((hi - lo) / Levels).clamp_min(1e-12);
        return (s, (-lo / s).round().clamp(0, Levels));
    }

    /// <summary>q = clamp(round(x / s) + z, 0 (1 for a narrow range), 2^b − 1), as float.</summary>
    public Tensor Codes(Tensor x, Tensor scales, Tensor zeros) => ((x / scales).round() + zeros).clamp(Lowest, Levels);

    public static Tensor Dequantize(Tensor codes, Tensor scales, Tensor zeros) => (codes - zeros) * scales;

    /// <summary>[rows, cols] as [rows, ⌈cols/size⌉, size], the last block zero-padded: the block layout of MatMulNBits.</summary>
    public static Tensor Blocks(Tensor matrix, long size)
    {
        var columns = matrix.shape[1];
        var blocks = (columns + size - 1) / size;
        return nn.functional.pad(matrix, [0, blocks * size - columns]).reshape(matrix.shape[0], blocks, size);
    }

    /// <summary>The inverse of <see cref="Blocks"/>: [rows, blocks, size] back to [rows, <paramref name="columns"/>].</summary>
    public static Tensor Unblocks(Tensor blocks, long columns) => blocks.reshape(blocks.shape[0], -1).narrow(1, 0, columns);

    /// <summary>Two 4-bit codes per byte along the last axis, the first in the low nibble (an even count).</summary>
    public static Tensor PackNibbles(Tensor codes)
    {
        var pairs = codes.to_type(ScalarType.Byte).reshape([.. codes.shape[..^1], codes.shape[^1] / 2, 2]);
        return (pairs.select(-1, 0) + pairs.select(-1, 1) * 16).to_type(ScalarType.Byte); // codes < 16: no carry
    }
}
