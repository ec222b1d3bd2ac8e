using Compress.Core.Execution;
using Compress.Spec;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Passes.SecondOrder;

/// <summary>
/// WoodFisher (algorithms.md §3) on any <see cref="IGradientModel"/>. In <c>steps</c> sub-steps on a cubic schedule
/// towards the target: take one gradient per calibration sample (masked by the current mask); build the inverse
/// empirical Fisher F⁻¹ = (λI + (1/N) Σ g gᵀ)⁻¹ for each block of <c>blockSize</c> consecutive weights
/// (<see cref="FisherBlocks"/>); score each weight by w² / [F⁻¹]_qq; prune the lowest (the caller's masks: global
/// with a per-layer cap, or per layer); then apply the OBS update δw = F⁻¹ b, b = −w ⊙ newly pruned / diag(F⁻¹),
/// and the mask.
/// </summary>
public static class WoodFisher
{
    private const int Chunk = 128;

    /// <param name="masks">Keep-masks from scores ≥ 0 for a target sparsity (the step's scope).</param>
    /// <returns>The pruned and updated weights.</returns>
    public static List<Tensor> Prune(IGradientModel model, IReadOnlyList<string> names, IReadOnlyList<Tensor> originals, PruneStep step,
        Func<IReadOnlyList<Tensor>, double, List<Tensor>> masks, Action<string> progress)
    {
        var weights = originals.Select(w => w.clone()).ToList();
        var kept = weights.Select(w => ones_like(w, ScalarType.Bool)).ToList();
        for (var t = 1; t <= step.Steps; t++)
        {
            var target = step.Sparsity * (1 - Math.Pow(1 - t / (double)step.Steps, 3));
            progress($"woodfisher: step {t}/{step.Steps} to {target:P1}, {model.Count} gradients (loss against {model.Source})");
            using var scope = NewDisposeScope();
            var inverses = InverseFisher(model, kept, step);
            var diagonals = inverses.Select(f => f.diagonal(0, 1, 2).flatten()).ToList();
            var scores = weights.Select((w, i) => (w.flatten().to_type(ScalarType.Float64).square() / diagonals[i].narrow(0, 0, w.numel())).reshape(w.shape)).ToList();
            var next = masks(scores, target);
            for (var i = 0; i < weights.Count; i++)
            {
                var newlyPruned = kept[i].logical_and(next[i].logical_not()).flatten();
                var blocks = inverses[i].shape[0];
                var w = Padded(weights[i].flatten().to_type(ScalarType.Float64), blocks * step.BlockSize);
                var b = -(w * Padded(newlyPruned.to_type(ScalarType.Float64), w.numel())) / diagonals[i];
                var delta = inverses[i].bmm(b.reshape(blocks, step.BlockSize, 1)).flatten().narrow(0, 0, weights[i].numel());
                var updated = (weights[i].flatten().to_type(ScalarType.Float64) + delta).reshape(weights[i].shape).to_type(ScalarType.Float32);
                kept[i] = next[i].logical_and(kept[i]).MoveToOuterDisposeScope();
                weights[i] = where(kept[i], updated, 0f).MoveToOuterDisposeScope();
                model.SetWeight(names[i], weights[i].clone());
            }
        }

        return weights;
    }

    /// <summary>Per weight tensor: [blocks, c, c] float64 inverse Fisher blocks (the last block zero-padded).</summary>
    private static List<Tensor> InverseFisher(IGradientModel model, IReadOnlyList<Tensor> masks, PruneStep step)
    {
        var n = model.Count;
        var fishers = masks.Select(m => new FisherBlocks(m.numel(), step.BlockSize, step.Damping, n)).ToList();
        try
        {
            for (var start = 0; start < n; start += Chunk)
            {
                using var scope = NewDisposeScope();
                var perSample = Enumerable.Range(start, Math.Min(Chunk, n - start)).Select(s => model.Gradients(s, 1)).ToList();
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
