using Compress.Core.Onnx;
using Compress.Core.Torch;
using Compress.Spec;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Passes.Pruning;

/// <summary>
/// Magnitude pruning (algorithms.md §1): zero the smallest |w|, layer-wise or globally with every layer capped at
/// <c>maxLayerSparsity</c> (<see cref="SparsityBudget"/>). N:M: in every group of M consecutive weights along
/// the input axis keep the N largest. Biases are never pruned.
/// </summary>
public sealed class MagnitudePruner(PruneStep step) : ICompressionPass
{
    public string Name => "prune/magnitude";

    public void Apply(CompressionContext context)
    {
        TorchRuntime.EnsureLoaded();
        var uses = PrunedWeights.Select(context, step);
        if (uses.Count == 0)
        {
            return;
        }

        using var scope = NewDisposeScope();
        var weights = uses.Select(u => context.Model.ToTorch(u.Weight)).ToList();
        var masks = step.N > 0 ? weights.Zip(uses).Select(p => NmMask(p.First, p.Second, context)).ToList()
            : step.Scope == "layer" ? weights.Select(w => SparsityBudget.Layer(w.abs(), step.Sparsity)).ToList()
            : SparsityBudget.Global(weights.Select(w => w.abs()).ToList(), step.Sparsity, step.MaxLayerSparsity);
        PrunedWeights.Write(context, "magnitude", uses, weights, weights.Zip(masks, (w, m) => where(m, w, 0f)).ToList());
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
