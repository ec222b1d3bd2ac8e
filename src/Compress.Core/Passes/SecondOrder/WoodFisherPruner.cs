using Compress.Core.Execution;
using Compress.Core.Passes.Pruning;
using Compress.Core.Torch;
using Compress.Spec;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Passes.SecondOrder;

/// <summary>
/// <c>prune.method: "woodfisher"</c> (algorithms.md §3). In <c>steps</c> sub-steps on a cubic schedule towards
/// the target: take one gradient per calibration sample (masked by the current mask) through the TorchSharp
/// executor; build the inverse empirical Fisher F⁻¹ = (λI + (1/N) Σ g gᵀ)⁻¹ for each block of <c>blockSize</c>
/// consecutive weights (<see cref="FisherBlocks"/>); score each weight by w² / [F⁻¹]_qq; prune the lowest globally (per-layer
/// cap) or per layer; then apply the OBS update δw = F⁻¹ b, b = −w ⊙ newly pruned / diag(F⁻¹), and the mask.
/// </summary>
public sealed class WoodFisherPruner(PruneStep step) : PruningPass(step)
{
    private const int Chunk = 128;

    protected override void Prune(CompressionContext context, IReadOnlyList<WeightUse> uses)
    {
        var names = uses.Select(u => u.Weight.Name).ToList();
        using var source = new GradientSource(context.Model, context.Calibration, names);
        var originals = uses.Select(u => context.Model.ToTorch(u.Weight)).ToList();
        var weights = originals.Select(w => w.clone()).ToList();
        var masks = weights.Select(w => ones_like(w, ScalarType.Bool)).ToList();
        for (var t = 1; t <= Step.Steps; t++)
        {
            var target = Step.Sparsity * (1 - Math.Pow(1 - t / (double)Step.Steps, 3));
            context.Progress($"woodfisher: step {t}/{Step.Steps} to {target:P1}, {source.Count} gradients (loss against {source.Source})");
            using var stepScope = NewDisposeScope();
            var inverses = InverseFisher(source, masks);
            var diagonals = inverses.Select(f => f.diagonal(0, 1, 2).flatten()).ToList();
            var scores = weights.Select((w, i) => (w.flatten().to_type(ScalarType.Float64).square() / diagonals[i].narrow(0, 0, w.numel())).reshape(w.shape)).ToList();
            var kept = Masks(scores, target);
            for (var i = 0; i < weights.Count; i++)
            {
                var newlyPruned = masks[i].logical_and(kept[i].logical_not()).flatten();
                var blocks = inverses[i].shape[0];
                var w = Padded(weights[i].flatten().to_type(ScalarType.Float64), blocks * Step.BlockSize);
                var b = -(w * Padded(newlyPruned.to_type(ScalarType.Float64), w.numel())) / diagonals[i];
                var delta = inverses[i].bmm(b.reshape(blocks, Step.BlockSize, 1)).flatten().narrow(0, 0, weights[i].numel());
                var updated = (weights[i].flatten().to_type(ScalarType.Float64) + delta).reshape(weights[i].shape).to_type(ScalarType.Float32);
                masks[i] = kept[i].logical_and(masks[i]).MoveToOuterDisposeScope();
                weights[i] = where(masks[i], updated, 0f).MoveToOuterDisposeScope();
                source.SetWeight(names[i], weights[i].clone());
            }
        }

        Write(context, uses, originals, weights);
    }

    /// <summary>Per weight tensor: [blocks, c, c] float64 inverse Fisher blocks (the last block zero-padded).</summary>
    private List<Tensor> InverseFisher(GradientSource source, IReadOnlyList<Tensor> masks)
    {
        var n = source.Count;
        var fishers = masks.Select(m => new FisherBlocks(m.numel(), Step.BlockSize, Step.Damping, n)).ToList();
        try
        {
            for (var start = 0; start < n; start += Chunk)
            {
                using var scope = NewDisposeScope();
                var perSample = Enumerable.Range(start, Math.Min(Chunk, n - start)).Select(s => source.Gradients(s, 1)).ToList();
                for (var i = 0; i < fishers.Count; i++)
                {
                    fishers[i].Add(stack(perSample.Select(p => (p[i] * masks[i]).flatten()).ToList(), 1));
                }
            }

            return fishers.Select(f => f.Inverse()).ToList();
        }
        finally
        {
            fishers.ForEach(f => f.Dispose());
        }
    }

    private static Tensor Padded(Tensor flat, long length) =>
        flat.numel() == length ? flat : nn.functional.pad(flat, [0, length - flat.numel()]);
}
