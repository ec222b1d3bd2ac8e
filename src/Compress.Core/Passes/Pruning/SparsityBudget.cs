using TorchSharp;
using static TorchSharp.torch;

using Compress.Spec;

namespace Compress.Core.Passes.Pruning;

/// <summary>
/// Keep-masks from saliency scores (|w| for magnitude, |w·g| for SNIP, w²/[F⁻¹]_qq for WoodFisher; all ≥ 0).
/// Layer-wise: each tensor loses its own smallest fraction. Global: one threshold over all tensors, found by
/// bisection so that, with every tensor capped at <c>cap</c>, the total reaches the target (algorithms.md §1).
/// Exact counts by k-th value selection, not a full sort.
/// </summary>
public static class SparsityBudget
{
    /// <summary>Keep-masks by the step's scope: per layer, or one global threshold capped at its <c>maxLayerSparsity</c>.</summary>
    public static List<Tensor> Masks(IReadOnlyList<Tensor> scores, double sparsity, PruneStep step) =>
        step.Scope == "layer" ? scores.Select(s => Layer(s, sparsity)).ToList() : Global(scores, sparsity, step.MaxLayerSparsity);

    /// <summary>#{s &lt; t}; each probe frees its mask at once (a model-sized mask per probe would pile up otherwise).</summary>
    private static long Below(Tensor scores, double t)
    {
        using var probe = NewDisposeScope();
        return scores.lt(t).sum().item<long>();
    }

    /// <summary>The k-th smallest (1-based) of all the scores, holding at most about a million of them at once.</summary>
    private static double KthSmallest(IReadOnlyList<Tensor> flat, long k)
    {
        double lo = 0, hi = flat.Max(s => s.max().to_type(ScalarType.Float64).item<double>()) * 1.0001 + 1e-30;
        long belowLo = 0, belowHi = flat.Sum(s => s.numel());
        for (var iteration = 0; iteration < 64 && belowHi - belowLo > (1 << 20); iteration++)
        {
            var mid = (lo + hi) / 2;
            var below = flat.Sum(s => Below(s, mid));
            if (below < k)
            {
                (lo, belowLo) = (mid, below);
            }
            else
            {
                (hi, belowHi) = (mid, below);
            }
        }

        using var scope = NewDisposeScope();
        var inside = cat(flat.Select(s => s.masked_select(s.ge(lo).logical_and(s.lt(hi)))).ToList(), 0);
        return inside.kthvalue(k - belowLo, 0, false).values.to_type(ScalarType.Float64).item<double>();
    }

    /// <summary>
    /// Magnitudes made comparable across layers by LAMP (layer-adaptive magnitude pruning, algorithms.md §1): with a
    /// layer's weights sorted by |w| ascending, score(u) = w_u² / Σ_{v ≥ u} w_v² — the share of the energy still left
    /// in the layer that pruning u would remove. Scale-free (a layer 100× smaller scores the same), the same order as
    /// |w| within a layer, and 1 for each layer's largest weight, so a global threshold never wipes out a layer by its
    /// scale (after BatchNorm folding one layer may be 100× smaller than its neighbour).
    /// </summary>
    public static Tensor ScaleFreeMagnitude(Tensor weight)
    {
        using var scope = NewDisposeScope(); // the sort's copies are freed per layer, not when the pass ends
        Tensor sorted, order;
        using (var squares = weight.square().flatten())
        {
            (sorted, order) = squares.sort(dim: 0, descending: false, stable: true); // ties in a fixed order: same bytes everywhere
        }

        // In place, to keep a large layer's temporaries few: Σ_{v ≥ u} w_v² = total − Σ_{v < u} w_v².
        var remaining = sorted.cumsum(0, ScalarType.Float64);
        var total = remaining[-1].item<double>();
        using (var sorted64 = sorted.to_type(ScalarType.Float64)) // in-place ops on one dtype only
        {
            remaining.sub_(sorted64).neg_().add_(total).clamp_min_(1e-300);
        }

        using (var share = remaining.to_type(ScalarType.Float32))
        {
            remaining.Dispose();
            sorted.div_(share);
        }

        var scores = empty(weight.numel(), ScalarType.Float32).scatter_(0, order, sorted);
        return scores.reshape(weight.shape).MoveToOuterDisposeScope();
    }

    /// <summary>Keep-mask of a [rows, cols] score matrix: in every group of M consecutive columns of a row, the N highest.</summary>
    public static Tensor NmKeep(Tensor scores, int n, int m)
    {
        var groups = scores.reshape(scores.shape[0], scores.shape[1] / m, m);
        var keep = groups.topk(n, dim: 2).indexes;
        return zeros_like(groups, ScalarType.Bool).scatter_(2, keep, ones_like(keep, ScalarType.Bool)).reshape(scores.shape[0], scores.shape[1]);
    }

    /// <summary>
    /// Keep-mask of a [rows, cols] score matrix: each row loses its round(<paramref name="sparsity"/>·cols) lowest
    /// scores, exactly (ties in column order).
    /// </summary>
    public static Tensor RowKeep(Tensor scores, double sparsity)
    {
        var k = (long)Math.Round(sparsity * scores.shape[1]);
        var keep = ones_like(scores, ScalarType.Bool);
        if (k == 0)
        {
            return keep;
        }

        var lowest = scores.sort(dim: 1, descending: false, stable: true).Indices.narrow(1, 0, k);
        return keep.scatter_(1, lowest, zeros_like(lowest, ScalarType.Bool));
    }

    /// <summary>The weights with everything outside their masks set to +0.0.</summary>
    public static List<Tensor> Apply(IReadOnlyList<Tensor> weights, IReadOnlyList<Tensor> masks) =>
        weights.Zip(masks, (w, m) => where(m, w, 0f)).ToList();

    public static Tensor Layer(Tensor scores, double sparsity)
    {
        var k = (long)Math.Round(sparsity * scores.numel());
        if (k == 0)
        {
            return ones_like(scores, ScalarType.Bool);
        }

        var threshold = scores.flatten().kthvalue(k, 0, false).values;
        return scores > threshold;
    }

    public static List<Tensor> Global(IReadOnlyList<Tensor> scores, double sparsity, double cap)
    {
        var flat = scores.Select(s => s.flatten()).ToList();
        var total = scores.Sum(s => s.numel());
        var target = (long)Math.Round(sparsity * total);
        var caps = scores.Select(s => (long)Math.Floor(cap * s.numel())).ToList();
        if (target == 0)
        {
            return scores.Select(s => ones_like(s, ScalarType.Bool)).ToList();
        }

        // Usually no layer reaches its cap: then the threshold is the target-th smallest score of all. Found without
        // a model-sized sort: bisect until few scores lie in the bracket, then take the exact k-th among those (ties
        // at it go to the first layers, so the count is exact).
        var threshold = KthSmallest(flat, target);
        var counts = flat.Select(s => Below(s, threshold)).ToArray();
        var rest = target - counts.Sum();
        for (var i = 0; i < counts.Length && rest > 0; i++)
        {
            using var tie = NewDisposeScope();
            var take = Math.Min(rest, flat[i].eq(threshold).sum().item<long>());
            counts[i] += take;
            rest -= take;
        }

        if (counts.Select((c, i) => c <= caps[i]).All(ok => ok))
        {
            return scores.Select((s, i) => Layer(s, counts[i] / (double)s.numel())).ToList();
        }

        // Pruned count at threshold t: Σ_l min(#{s_l < t}, cap_l). Monotone in t, so bisect.
        long PrunedAt(double t) => flat.Select((s, i) => Math.Min(Below(s, t), caps[i])).Sum();
        double lo = 0, hi = flat.Max(s => s.max().to_type(ScalarType.Float64).item<double>()) * 1.0001 + 1e-30;
        for (var iteration = 0; iteration < 200 && hi - lo > 1e-12 * hi; iteration++)
        {
            var mid = (lo + hi) / 2;
            var pruned = PrunedAt(mid);
            if (pruned == target)
            {
                hi = mid;
                break;
            }

            if (pruned < target)
            {
                lo = mid;
            }
            else
            {
                hi = mid;
            }
        }

        return scores.Select((s, i) =>
        {
            var below = Math.Min(Below(flat[i], hi), caps[i]);
            return Layer(s, below / (double)s.numel());
        }).ToList();
    }
}
