using Compress.Core.Onnx;
using Compress.Core.Passes;
using Compress.Core.Passes.Quantization;
using Compress.Core.Passes.SecondOrder;
using Compress.Core.Torch;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Allocation;

/// <summary>Prunes one layer's weight matrix [rows, cols] to a sparsity given its input Hessians [groups, cols, cols] (the method's own rule).</summary>
public delegate Tensor LayerPruner(Tensor matrix, Tensor hessian, double sparsity);

/// <summary>One database entry: a sparsity and bits, and the layer's relative output error compressed that way.</summary>
/// <param name="Bytes">What the entry's layer would store, when the rounding measured it (packed: its entropy); else null.</param>
public sealed record DatabaseEntry(double Sparsity, int Bits, double Error, long? Bytes = null);

/// <summary>Puts a pruned matrix's kept weights on <paramref name="bits"/>' values; returns them and, where it can tell, the bytes they would take.</summary>
public delegate (Tensor Rounded, long? Bytes) LayerRounding(Tensor matrix, int bits);

/// <summary>One layer of the database: its weight, size, squared norm and the error of every choice.</summary>
public sealed record LayerErrors(WeightUse Use, long Parameters, long Rows, double SquaredNorm, IReadOnlyList<DatabaseEntry> Entries);

/// <summary>
/// The per-layer error database (algorithms.md §12): every layer compressed every candidate way on its own, its
/// relative output error ‖(Ŵ − W)X‖² / ‖WX‖² = tr(ΔW H ΔWᵀ) / tr(W H Wᵀ) on the calibration inputs of the uncompressed
/// model (one sequential pass, H = 2XXᵀ per group as the layer-wise methods take it). A choice prunes with the step's
/// own method (<see cref="LayerPruner"/>, e.g. SparseGPT's compensated update) and then rounds the kept weights to the
/// bits (per-channel symmetric int8; int4 in blocks of 32 along the input as MatMulNBits stores them).
/// </summary>
public static class ErrorDatabase
{
    /// <summary>The ridge added to the Hessian's diagonal, as a fraction of its mean, when a choice's error is judged.</summary>
    public const double Ridge = 0.05;

    /// <summary>
    /// Dense, then 20 levels from 40% to 99% spaced geometrically in density (OBC / SPDY), capped at
    /// <paramref name="cap"/>; with <paramref name="low"/> also 10–30%.
    /// </summary>
    public static double[] SparsityLevels(double cap, bool low = true)
    {
        var levels = new List<double> { 0 };
        if (low)
        {
            levels.AddRange([0.1, 0.2, 0.3]);
        }

        for (var i = 0; i < 20; i++)
        {
            var density = 0.6 * Math.Pow(0.01 / 0.6, i / 19.0);
            levels.Add(Math.Round(1 - density, 4));
        }

        return levels.Where(s => s <= cap + 1e-9).Distinct().ToArray();
    }

    public static List<LayerErrors> Build(CompressionContext context, IReadOnlyList<WeightUse> uses, IReadOnlyList<double> sparsities,
        Func<WeightUse, IReadOnlyList<int>> bits, LayerPruner? prune, LayerRounding? rounding = null)
    {
        var layers = new List<LayerErrors>();
        using var sequential = context.Layerwise("allocation");
        for (var i = 0; i < uses.Count; i++)
        {
            using var scope = NewDisposeScope();
            var use = uses[i];
            var layerBits = bits(use);
            context.Progress($"allocation: error database, {use.NodeName} ({i + 1}/{uses.Count}), {sparsities.Count * layerBits.Count} choices");
            var weight = context.Model.ToTorch(use.Weight);
            var matrix = LayerMatrix.ToMatrix(weight, use).to_type(ScalarType.Float32);
            var hessian = LayerHessian.Compute(context, use);
            // The error is judged with a ridge of Ridge × the mean diagonal added: where the calibration rows do not span the
            // layer's inputs (a squeeze-excitation conv sees one row per sample), OBS can move the weights far at no cost
            // on those rows, which the unseen data pays for.
            var judged = hessian.clone();
            judged.diagonal(0, 1, 2).add_(judged.diagonal(0, 1, 2).mean(new long[] { 1 }, keepdim: true) * Ridge);
            var reference = OutputEnergy(matrix, judged);
            var entries = new List<DatabaseEntry>();
            foreach (var sparsity in sparsities)
            {
                using var level = NewDisposeScope();
                var pruned = sparsity == 0 || prune is null ? matrix : prune(matrix, hessian.clone(), sparsity);
                foreach (var b in layerBits)
                {
                    var (compressed, bytes) = b >= 32 ? (pruned, null) : rounding is null ? (Round(pruned, b), null) : rounding(pruned, b);
                    var error = compressed.Equals(matrix) ? 0 : OutputEnergy(compressed - matrix, judged) / Math.Max(reference, 1e-30);
                    entries.Add(new DatabaseEntry(sparsity, b, error, bytes));
                }
            }

            layers.Add(new LayerErrors(use, matrix.numel(), matrix.shape[0], matrix.square().sum().ToDouble(), entries));
        }

        return layers;
    }

    /// <summary>tr(M H Mᵀ) summed over the groups (rows split evenly between them).</summary>
    private static double OutputEnergy(Tensor m, Tensor hessian)
    {
        var groups = hessian.shape[0];
        var rows = m.reshape(groups, m.shape[0] / groups, m.shape[1]).to_type(hessian.dtype);
        return (rows.bmm(hessian) * rows).sum().ToDouble();
    }

    /// <summary>
    /// Weight sharing as <c>pack</c> does it (k-means on the kept weights, 2^bits values) and the bytes the packed file
    /// spends on the layer: the symbols' order-0 entropy (0 for a pruned weight, j for the j-th value, coded together
    /// by rANS) plus the codebook.
    /// </summary>
    public static (Tensor Rounded, long? Bytes) Shared(Tensor matrix, int bits)
    {
        var flat = matrix.flatten();
        var kept = flat.ne(0);
        var count = kept.sum().ToInt64();
        if (count == 0)
        {
            return (matrix, (flat.numel() + 7) / 8);
        }

        var (centroids, assignment) = Passes.Packing.ScalarKMeans.Fit(flat[kept], 1 << bits);
        var shared = zeros_like(flat).index_put_(centroids.to_type(ScalarType.Float32)[assignment], kept).reshape(matrix.shape);
        var frequencies = bincount(assignment, minlength: (int)centroids.shape[0]).to_type(ScalarType.Float64);
        var symbols = cat([tensor(new double[] { flat.numel() - count }), frequencies]) / flat.numel();
        var nonzero = symbols[symbols.gt(0)];
        var entropy = -(nonzero * nonzero.log2()).sum().ToDouble(); // bits per weight
        return (shared, (long)Math.Ceiling(entropy * flat.numel() / 8) + centroids.shape[0] * 4 + 16);
    }

    /// <summary>Round-to-nearest onto a symmetric grid: per row at 8 bits (QDQ), per block of 32 inputs below (MatMulNBits).</summary>
    private static Tensor Round(Tensor matrix, int bits)
    {
        var grid = new IntegerGrid(bits, Symmetric: true);
        if (bits >= 8)
        {
            var (s, z) = grid.Fit(matrix, 1);
            return IntegerGrid.Dequantize(grid.Codes(matrix, s, z), s, z);
        }

        var blocks = IntegerGrid.Blocks(matrix, StoredBytes.NBitsBlock);
        var (scales, zeros) = grid.Fit(blocks, 2);
        return IntegerGrid.Unblocks(IntegerGrid.Dequantize(grid.Codes(blocks, scales, zeros), scales, zeros), matrix.shape[1]);
    }
}
