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

        // Pruned count at threshold t: Σ_l min(#{s_l < t}, cap_l). Monotone in t, so bisect.
        long PrunedAt(double t) => flat.Select((s, i) => Math.Min(s.lt(t).sum().item<long>(), caps[i])).Sum();
        double lo = 0, hi = flat.Max(s => s.max().to_type(ScalarType.Float64).item<double>()) * 1.0001 + 1e-30;
        for (var iteration = 0; iteration < 200 && hi - lo > 1e-12 * hi; iteration++)
        {
            var mid = (lo + hi) / 2;
            if (PrunedAt(mid) < target)
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
            var below = Math.Min(flat[i].lt(hi).sum().item<long>(), caps[i]);
            return Layer(s, below / (double)s.numel());
        }).ToList();
    }
}
