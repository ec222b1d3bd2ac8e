using Compress.Core.Passes.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Passes.SecondOrder;

/// <summary>What one layer-wise OBS run does: prune (fraction or N:M) and/or quantize onto a grid.</summary>
public sealed record ObsOptions
{
    /// <summary>Fraction of weights to prune (unstructured); 0 prunes nothing beyond the zeros already there.</summary>
    public double Sparsity { get; init; }

    /// <summary>Keep N of every M consecutive columns per row (N = 0: unstructured).</summary>
    public int N { get; init; }

    public int M { get; init; }

    public int BlockSize { get; init; } = 128;

    /// <summary>Added to the Hessian diagonal as a fraction of its mean.</summary>
    public double Damping { get; init; } = 0.01;

    /// <summary>
    /// Before the damping, H ← (1 − s)·H + s·diag(H): the off-diagonal part, which few calibration rows estimate
    /// poorly, shrunk towards each input's own energy (0 leaves H as it is).
    /// </summary>
    public double Shrinkage { get; init; }

    /// <summary>Quantize every kept weight onto this grid (GPTQ); null prunes only (SparseGPT).</summary>
    public IntegerGrid? Grid { get; init; }

    /// <summary>Columns per quantization group; a new grid is fitted at each group's first column.</summary>
    public int GroupSize { get; init; } = 128;

    /// <summary>Process columns by descending Hessian diagonal (groups then keep grids fitted up front).</summary>
    public bool ActOrder { get; init; }

    /// <summary>Grids given up front, [rows, groups] scales and zero points (e.g. QDQ's per-channel scales); null fits them.</summary>
    public (Tensor Scales, Tensor Zeros)? FixedGrid { get; init; }
}

/// <summary>Codes [rows, cols] and per-group scales and zero points [rows, groups], all float.</summary>
public sealed record GridCodes(Tensor Codes, Tensor Scales, Tensor Zeros);

/// <summary>
/// Layer-wise Optimal Brain Surgeon with the input Hessian (algorithms.md §4): SparseGPT when pruning, GPTQ when
/// quantizing, both when asked. Minimises ‖WX − ŴX‖² column by column through the upper Cholesky factor U of
/// H⁻¹ (H⁻¹ = UᵀU), with lazy block updates of B columns. Weights already zero stay zero.
/// </summary>
public static class LayerObs
{
    /// <summary>
    /// Runs <paramref name="run"/> on each group's rows with that group's Hessian (Conv groups: one [cols, cols] per
    /// group; a single group otherwise) and stacks the results back by rows. <paramref name="run"/> gets the rows,
    /// the Hessian and the index of the group's first row.
    /// </summary>
    public static Tensor PerGroup(Tensor matrix, Tensor hessians, Func<Tensor, Tensor, long, Tensor> run)
    {
        var rows = matrix.shape[0] / hessians.shape[0];
        var slices = Enumerable.Range(0, (int)hessians.shape[0]).Select(g => hessians[g]).ToList();
        hessians.Dispose(); // each run may take its slice over (Run): the storage goes once the last group is factored
        return cat(slices.Select((h, g) => run(matrix.narrow(0, g * rows, rows), h, g * rows)).ToList(), 0);
    }

    /// <param name="weight">[rows, cols] float32 (rows = output channels).</param>
    /// <param name="hessian">[cols, cols] float64, 2XXᵀ over the calibration rows.</param>
    /// <param name="takeOver">
    /// Whether the run may damp and factor <paramref name="hessian"/> in place and release it once factored (a wide
    /// layer's Hessian is hundreds of MB: no copy is made); otherwise it works on a copy.
    /// </param>
    public static (Tensor Weight, GridCodes? Codes) Run(Tensor weight, Tensor hessian, ObsOptions options, bool takeOver = false)
    {
        var rows = weight.shape[0];
        var cols = weight.shape[1];
        var w = weight.to_type(ScalarType.Float32).clone();
        // A Hessian of LayerHessian.SinglePrecisionColumns or more columns stays float32; smaller ones work in float64.
        var precision = hessian.shape[0] >= LayerHessian.SinglePrecisionColumns ? ScalarType.Float32 : ScalarType.Float64;
        var h = takeOver && hessian.dtype == precision ? hessian : hessian.to_type(precision).clone();
        var dead = h.diagonal().eq(0);
        h.diagonal().masked_fill_(dead, 1);
        w.masked_fill_(dead.unsqueeze(0), 0);
        var fixedZeros = w.eq(0); // pruned before, or dead inputs: kept at zero
        if (options.Shrinkage > 0)
        {
            // The diagonal stays; every off-diagonal entry is scaled by 1 − s (in place on the run's own copy).
            using var diagonal = h.diagonal().clone();
            h.mul_(1 - options.Shrinkage);
            h.diagonal().copy_(diagonal);
        }

        Tensor? permutation = null;
        var groupOf = Enumerable.Range(0, (int)cols).Select(c => c / options.GroupSize).ToArray();
        Tensor? staticScales = null, staticZeros = null;
        var grid = options.Grid;
        var groups = (cols + options.GroupSize - 1) / options.GroupSize;
        var scales = grid is null ? null : zeros(rows, groups);
        var zeroPoints = grid is null ? null : zeros(rows, groups);
        if (options.FixedGrid is { } given)
        {
            (staticScales, staticZeros) = (given.Scales.unsqueeze(2), given.Zeros.unsqueeze(2));
            scales!.copy_(given.Scales);
            zeroPoints!.copy_(given.Zeros);
        }
        else if (grid is { } g && options.ActOrder)
        {
            // Grids fitted up front on contiguous groups, so the stored layout stays MatMulNBits' blocks.
            (staticScales, staticZeros) = g.Fit(IntegerGrid.Blocks(w, options.GroupSize), 2);
            scales!.copy_(staticScales.squeeze(2));
            zeroPoints!.copy_(staticZeros.squeeze(2));
        }

        if (grid is not null && options.ActOrder)
        {
            permutation = h.diagonal().argsort(descending: true);
            var order = permutation.data<long>().ToArray();
            groupOf = order.Select(c => (int)(c / options.GroupSize)).ToArray();
            w = w.index_select(1, permutation);
            h = h.index_select(0, permutation).index_select(1, permutation);
            fixedZeros = fixedZeros.index_select(1, permutation);
        }

        // Consumes h: cols² each (133 MB in float32 for a 640-channel 3×3 conv); U comes back float32.
        var u = UpperInverseCholesky(h, options.Damping);

        var codes = grid is null ? null : zeros(rows, cols);
        // A grid refitted at a group's first column must see that group's columns fully updated: blocks hold whole groups.
        var block = grid is null || staticScales is not null ? options.BlockSize : Math.Max(options.BlockSize, options.GroupSize);
        for (long i1 = 0; i1 < cols; i1 += block)
        {
            using var scope = NewDisposeScope();
            var count = Math.Min(block, cols - i1);
            var w1 = w.narrow(1, i1, count).clone();
            var q1 = zeros_like(w1);
            var e1 = zeros_like(w1);
            var u1 = u.narrow(0, i1, count).narrow(1, i1, count);
            var diagonal = u1.diagonal();
            var pruned = fixedZeros.narrow(1, i1, count).clone();
            if (options.Sparsity > 0 && options.N == 0)
            {
                var saliency = w1.square() / diagonal.square().unsqueeze(0);
                var k = (long)Math.Floor(saliency.numel() * options.Sparsity);
                if (k > 0)
                {
                    var threshold = saliency.flatten().kthvalue(k, 0).values;
                    pruned.logical_or_(saliency.le(threshold));
                }
            }

            for (long j = 0; j < count; j++)
            {
                if (options.N > 0 && j % options.M == 0)
                {
                    var width = Math.Min(options.M, count - j);
                    var saliency = w1.narrow(1, j, width).square() / diagonal.narrow(0, j, width).square().unsqueeze(0);
                    var smallest = saliency.topk(options.M - options.N, dim: 1, largest: false).indexes;
                    pruned.narrow(1, j, width).scatter_(1, smallest, ones_like(smallest, ScalarType.Bool));
                }

                var column = w1.select(1, j);
                var keep = pruned.select(1, j).logical_not();
                Tensor quantized;
                if (grid is { } q)
                {
                    var col = i1 + j;
                    Tensor s, z;
                    if (staticScales is not null)
                    {
                        s = staticScales!.select(1, groupOf[col]).squeeze(1);
                        z = staticZeros!.select(1, groupOf[col]).squeeze(1);
                    }
                    else
                    {
                        if (col % options.GroupSize == 0)
                        {
                            var (fs, fz) = q.Fit(w1.narrow(1, j, Math.Min(options.GroupSize, count - j)), 1);
                            scales!.select(1, groupOf[col]).copy_(fs.squeeze(1));
                            zeroPoints!.select(1, groupOf[col]).copy_(fz.squeeze(1));
                        }

                        s = scales!.select(1, groupOf[col]);
                        z = zeroPoints!.select(1, groupOf[col]);
                    }

                    var c = where(keep, q.Codes(column, s, z), z);
                    codes!.select(1, col).copy_(c);
                    quantized = IntegerGrid.Dequantize(c, s, z);
                }
                else
                {
                    quantized = where(keep, column, 0f);
                }

                q1.select(1, j).copy_(quantized);
                var error = (column - quantized) / diagonal[j];
                w1.narrow(1, j, count - j).sub_(error.outer(u1[j].narrow(0, j, count - j)));
                e1.select(1, j).copy_(error);
            }

            w.narrow(1, i1, count).copy_(q1);
            if (i1 + count < cols)
            {
                w.narrow(1, i1 + count, cols - i1 - count).sub_(e1.mm(u.narrow(0, i1, count).narrow(1, i1 + count, cols - i1 - count)));
            }
        }

        if (permutation is not null)
        {
            var inverse = permutation.argsort();
            w = w.index_select(1, inverse);
            codes = codes?.index_select(1, inverse);
        }

        return (w, codes is null ? null : new GridCodes(codes, scales!, zeroPoints!));
    }

    /// <summary>
    /// U (float32) with H⁻¹ = UᵀU, after damping the diagonal by <paramref name="damping"/>·mean(diag H). A Hessian that is
    /// still not positive definite (rank-deficient calibration) is damped ten times more, up to four times.
    /// </summary>
    private static Tensor UpperInverseCholesky(Tensor h, double damping)
    {
        // h is this run's own copy: damped in place (no further cols² copy), released once factored.
        var mean = h.diagonal().mean().ToDouble();
        var added = 0.0;
        for (var attempt = 0; ; attempt++)
        {
            var target = damping * Math.Pow(10, attempt) * mean;
            h.diagonal().add_(target - added);
            added = target;
            var (lower, info) = linalg.cholesky_ex(h);
            using (lower)
            {
                if (info.item<int>() == 0)
                {
                    h.Dispose();
                    using var inverse = cholesky_inverse(lower);
                    lower.Dispose();
                    using var factor = linalg.cholesky(inverse);
                    inverse.Dispose();
                    return factor.mT.to_type(ScalarType.Float32).contiguous();
                }
            }

            if (attempt == 4)
            {
                throw new InvalidOperationException("the layer's input Hessian is not positive definite even after 10⁴× damping");
            }
        }
    }
}
