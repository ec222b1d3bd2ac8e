using Compress.Core.Onnx;
using Compress.Core.Torch;
using Compress.Spec;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Passes.Pruning;

/// <summary>
/// Magnitude pruning (algorithms.md §1): zero the smallest |w|. Layer-wise: each weight reaches the sparsity on
/// its own. Global: one threshold over all selected weights, found by bisection so that, with every layer capped
/// at <c>maxLayerSparsity</c>, the total reaches the target. N:M: in every group of M consecutive weights along
/// the input axis keep the N largest. Biases are never pruned.
/// </summary>
public sealed class MagnitudePruner(PruneStep step) : ICompressionPass
{
    public string Name => "prune/magnitude";

    public void Apply(CompressionContext context)
    {
        TorchRuntime.EnsureLoaded();
        var uses = WeightSelection.Select(context.Model.Graph, step)
            .GroupBy(u => u.Weight.Name).Select(g => g.First()).ToList();
        if (uses.Count == 0)
        {
            context.Notes.Add($"prune: no {string.Join("/", step.OpTypes)} weights selected; nothing pruned");
            return;
        }

        using var scope = NewDisposeScope();
        var weights = uses.Select(u => context.Model.ToTorch(u.Weight)).ToList();
        var masks = step.N > 0 ? weights.Zip(uses).Select(p => NmMask(p.First, p.Second, context)).ToList()
            : step.Scope == "layer" ? weights.Select(w => LayerMask(w, step.Sparsity)).ToList()
            : GlobalMasks(weights);

        for (var i = 0; i < uses.Count; i++)
        {
            var pruned = where(masks[i], weights[i], 0f); // +0.0, not −0.0: zeros must be all-zero bytes for sparse storage
            var record = context.Layer(uses[i].Weight.Name, uses[i].NodeName, uses[i].Node.OpType, weights[i].numel());
            record.Sparsity = 1 - masks[i].to_type(ScalarType.Float64).mean().item<double>();
            record.RelativeError += Quantization.WeightQuantization.RelativeError(weights[i], pruned);
            context.Model.ReplaceData(uses[i].Weight, pruned.ToOnnx(uses[i].Weight.Name));
        }

        var total = weights.Sum(w => w.numel());
        var zeros = masks.Sum(m => m.numel() - m.count_nonzero().item<long>());
        context.Progress($"prune: {uses.Count} weights, {zeros:N0} of {total:N0} set to zero ({zeros / (double)total:P1})");
    }

    private static Tensor LayerMask(Tensor weight, double sparsity)
    {
        var k = (long)Math.Round(sparsity * weight.numel());
        if (k == 0)
        {
            return ones_like(weight, ScalarType.Bool);
        }

        var threshold = weight.abs().flatten().kthvalue(k, 0, false).values;
        return weight.abs() > threshold;
    }

    private List<Tensor> GlobalMasks(List<Tensor> weights)
    {
        var magnitudes = weights.Select(w => w.abs().flatten()).ToList();
        var total = weights.Sum(w => w.numel());
        var target = (long)Math.Round(step.Sparsity * total);
        var caps = weights.Select(w => (long)Math.Floor(step.MaxLayerSparsity * w.numel())).ToList();

        // Pruned count at threshold t: Σ_l min(#{|w_l| < t}, cap_l). Monotone in t, so bisect.
        long PrunedAt(double t) => magnitudes.Select((m, i) => Math.Min(m.lt(t).sum().item<long>(), caps[i])).Sum();
        double lo = 0, hi = magnitudes.Max(m => m.max().item<float>()) * 1.0001 + 1e-12;
        for (var iteration = 0; iteration < 60 && hi - lo > 1e-12 * hi; iteration++)
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

        // Per layer: prune min(count below threshold, cap) smallest weights (exact counts via kthvalue).
        return weights.Select((w, i) =>
        {
            var below = Math.Min(magnitudes[i].lt(hi).sum().item<long>(), caps[i]);
            return LayerMask(w, below / (double)w.numel());
        }).ToList();
    }

    private Tensor NmMask(Tensor weight, WeightUse use, CompressionContext context)
    {
        // Groups run along the input (reduction) axis: rows of [out, in·k·k] for Conv and transB Gemm, columns otherwise.
        var matrix = use.OutputAxis == 0 ? weight.reshape(weight.shape[0], -1) : weight.t();
        var columns = matrix.shape[1];
        if (columns % step.M != 0)
        {
            throw Spec.SpecLoader.At(context.Spec, step.Line, step.Column, SpecCodes.Inconsistent,
                $"pattern {step.N}:{step.M} needs the input size of '{use.NodeName}' ({columns}) to be a multiple of {step.M}; add it to 'exclude'");
        }

        var groups = matrix.abs().reshape(matrix.shape[0], columns / step.M, step.M);
        var keep = groups.topk(step.N, dim: 2).indexes;
        var mask = zeros_like(groups, ScalarType.Bool).scatter_(2, keep, ones_like(keep, ScalarType.Bool)).reshape(matrix.shape[0], columns);
        return use.OutputAxis == 0 ? mask.reshape(weight.shape) : mask.t().contiguous();
    }
}
