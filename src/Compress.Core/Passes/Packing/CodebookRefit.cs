using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Passes.Packing;

/// <summary>
/// The codebook that minimises the layer's output error for fixed assignments (algorithms.md §17): with Ŵ = Σ_j c_j·M_j
/// (M_j the 0/1 matrix of cluster j), ‖(W − Ŵ)X‖² = cᵀGc − 2bᵀc + const, where G_jl = Σ_r Σ_{i∈j, m∈l} H_im and
/// b_j = Σ_{(r,i)∈j} (W H)_ri, H = XXᵀ the layer's input Hessian. A k×k solve. A damping λ·n_j(c_j − c̄_j)² toward the
/// k-means centroids c̄ (λ = 1 % of H's mean diagonal) keeps clusters on inputs the data never excites where they were.
/// G is built row by row from H restricted to the row's kept inputs, so a sparse layer costs its kept weights squared.
/// </summary>
public static class CodebookRefit
{
    public const double Damping = 0.01;

    /// <param name="target">The layer's weight before sharing, [rows, cols].</param>
    /// <param name="clusters">Each weight's cluster + 1, 0 where pruned, [rows, cols] int64.</param>
    /// <param name="hessian">[groups, cols, cols]; the rows split evenly over the groups.</param>
    /// <param name="centroids">The k-means codebook [k].</param>
    /// <returns>The refitted codebook [k] and the output errors ‖(W − Ŵ)X‖² (up to H's scale) with the k-means codebook and with the one returned.</returns>
    public static (Tensor Codebook, double Before, double After) Fit(Tensor target, Tensor clusters, Tensor hessian, Tensor centroids)
    {
        using var scope = NewDisposeScope();
        var k = centroids.shape[0];
        var w = target.to_type(ScalarType.Float64);
        var h = hessian.to_type(ScalarType.Float64);
        var (rows, groups) = (w.shape[0], h.shape[0]);
        var perGroup = rows / groups;
        var gram = zeros(k * k, ScalarType.Float64);
        var b = zeros(k + 1, ScalarType.Float64);
        // W·H by groups as one matrix product each (H symmetric): row r of it is (H w_r)ᵀ.
        var wh = cat(Enumerable.Range(0, (int)groups).Select(g => w.narrow(0, g * perGroup, perGroup).matmul(h[g])).ToArray(), 0);
        var wHw = (w * wh).sum().item<double>();
        for (var r = 0; r < rows; r++)
        {
            using var row = NewDisposeScope();
            var hg = h[r / perGroup];
            var kept = clusters[r].nonzero().flatten();
            if (kept.shape[0] == 0)
            {
                continue; // a fully pruned row: only its constant term (zero, its weights being zero)
            }

            var ids = clusters[r].index_select(0, kept) - 1;
            var sub = hg.index_select(0, kept).index_select(1, kept);
            gram.index_add_(0, ((ids.unsqueeze(1) * k) + ids.unsqueeze(0)).flatten(), sub.flatten(), 1);
            b.index_add_(0, clusters[r], wh[r], 1);
        }

        var g = gram.reshape(k, k);
        var rhs = b[1..];
        var counts = bincount(clusters.flatten(), minlength: (int)k + 1)[1..].to_type(ScalarType.Float64);
        var lambda = Damping * h.diagonal(0, 1, 2).mean().item<double>();
        var c0 = centroids.to_type(ScalarType.Float64);
        var damping = diag(counts * lambda);
        var solved = linalg.solve(g + damping, rhs + (damping.matmul(c0)));
        double Error(Tensor c) => wHw + (c.dot(g.matmul(c)) - (2 * rhs.dot(c))).item<double>();
        var (before, after) = (Error(c0), Error(solved));
        var best = after <= before && solved.isfinite().all().item<bool>() ? solved : c0;
        return (best.MoveToOuterDisposeScope(), before, Math.Min(before, after));
    }
}
