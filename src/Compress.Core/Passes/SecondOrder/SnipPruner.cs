using Compress.Core.Execution;
using Compress.Core.Passes.Pruning;
using Compress.Core.Torch;
using Compress.Spec;
using Compress.Spec.Methods;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Passes.SecondOrder;

/// <summary>
/// <c>prune.method: "snip"</c> (algorithms.md §2): connection sensitivity |w · ∂L/∂w| on one minibatch of up to
/// 128 calibration samples, gradients through the TorchSharp executor; the lowest scores are pruned globally
/// (per-layer cap) or per layer.
/// </summary>
[ImplementsMethod(SnipMethod.Name)]
public sealed class SnipPruner(PruneStep step) : PruningPass(step)
{
    private const int Minibatch = 128;

    protected override void Prune(CompressionContext context, IReadOnlyList<WeightUse> uses)
    {
        using var source = new GradientSource(context.Model, context.Calibration, uses.Select(u => u.Weight.Name).ToList());
        var count = Math.Min(Minibatch, source.Count);
        context.Progress($"snip: gradients on {count} samples (loss against {source.Source})");
        var gradients = source.Gradients(0, count);
        var weights = uses.Select(u => context.Model.ToTorch(u.Weight)).ToList();
        var scores = weights.Zip(gradients, (w, g) => (w * g).abs()).ToList();
        Write(context, uses, weights, Masked(weights, Masks(scores, Step.Sparsity)));
    }
}
