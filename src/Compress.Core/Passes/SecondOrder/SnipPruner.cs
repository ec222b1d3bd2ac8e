using Compress.Core.Execution;
using Compress.Core.Passes.Pruning;
using Compress.Core.Torch;
using Compress.Spec;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Passes.SecondOrder;

/// <summary>
/// <c>prune.method: "snip"</c> (algorithms.md §2): connection sensitivity |w · ∂L/∂w| on one minibatch of up to
/// 128 calibration samples, gradients through the TorchSharp executor; the lowest scores are pruned globally
/// (per-layer cap) or per layer.
/// </summary>
public sealed class SnipPruner(PruneStep step) : ICompressionPass
{
    private const int Minibatch = 128;

    public string Name => "prune/snip";

    public void Apply(CompressionContext context)
    {
        TorchRuntime.EnsureLoaded();
        var uses = PrunedWeights.Select(context, step);
        if (uses.Count == 0)
        {
            return;
        }

        using var scope = NewDisposeScope();
        using var source = new GradientSource(context.Model, context.Calibration, uses.Select(u => u.Weight.Name).ToList());
        var count = Math.Min(Minibatch, source.Count);
        context.Progress($"snip: gradients on {count} samples (loss against {source.Source})");
        var gradients = source.Gradients(0, count);
        var weights = uses.Select(u => context.Model.ToTorch(u.Weight)).ToList();
        var scores = weights.Zip(gradients, (w, g) => (w * g).abs()).ToList();
        var masks = step.Scope == "layer" ? scores.Select(s => SparsityBudget.Layer(s, step.Sparsity)).ToList()
            : SparsityBudget.Global(scores, step.Sparsity, step.MaxLayerSparsity);
        PrunedWeights.Write(context, "snip", uses, weights, weights.Zip(masks, (w, m) => where(m, w, 0f)).ToList());
    }
}
