using Compress.Core.Onnx;
using Compress.Core.Torch;
using Compress.Spec;
using Compress.Spec.Methods;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Passes.Pruning;

/// <summary>
/// Magnitude pruning (algorithms.md §1): zero the smallest |w|, layer-wise or globally — on LAMP scores, which are
/// scale-free, so no layer is wiped out by its scale — with every layer capped at <c>maxLayerSparsity</c> (<see cref="SparsityBudget"/>). N:M: in every group of M consecutive weights along
/// the input axis keep the N largest. Biases are never pruned.
/// </summary>
[ImplementsMethod(MagnitudeMethod.Name)]
public sealed class MagnitudePruner(PruneStep step) : PruningPass(step)
{
    /// <summary>
    /// Streams the weights: each is read to score it (or take its N:M mask), and read again to apply its mask and be
    /// written, so only the scores and masks of all layers are held at once — not two dense copies of the model.
    /// </summary>
    /// <summary>Within one layer, the largest magnitudes stay (what a per-layer sparsity means for magnitude pruning).</summary>
    protected internal override Allocation.LayerPruner DatabasePruner => (matrix, _, sparsity) =>
        where(Step.N > 0 ? SparsityBudget.NmKeep(matrix.abs(), Step.N, Step.M) : SparsityBudget.Layer(matrix.abs(), sparsity), matrix, 0f);

    protected override void Prune(CompressionContext context, IReadOnlyList<WeightUse> uses)
    {
        List<Tensor> masks;
        if (Step.N > 0)
        {
            // With an allocation, a layer it keeps dense (sparsity 0) keeps every weight.
            masks = uses.Select((u, i) => Scoped(() => KeptDense(i)
                ? ones(u.Weight.Dims.ToArray(), ScalarType.Bool) : NmMask(context.Model.ToTorch(u.Weight), u, context))).ToList();
        }
        else
        {
            var scores = uses.Select(u => Scoped(() => SparsityBudget.ScaleFreeMagnitude(context.Model.ToTorch(u.Weight)))).ToList();
            masks = Masks(scores, Step.Sparsity);
            scores.ForEach(s => s.Dispose());
        }

        long zeros = 0;
        for (var i = 0; i < uses.Count; i++)
        {
            using var layer = NewDisposeScope();
            var weight = context.Model.ToTorch(uses[i].Weight);
            zeros += WriteLayer(context, uses[i], weight, where(masks[i], weight, 0f));
            masks[i].Dispose();
        }

        Report(context, uses, zeros);
    }

    /// <summary>The result of <paramref name="make"/>, its temporaries freed at once.</summary>
    private static Tensor Scoped(Func<Tensor> make)
    {
        using var scope = NewDisposeScope();
        return make().MoveToOuterDisposeScope();
    }

    private Tensor NmMask(Tensor weight, WeightUse use, CompressionContext context)
    {
        // Groups run along the input (reduction) axis: rows of [out, in·k·k] for Conv and transB Gemm, columns otherwise.
        var matrix = use.OutputAxis == 0 ? weight.reshape(weight.shape[0], -1) : weight.t();
        CheckGroups(context, use, matrix.shape[1]);
        var mask = SparsityBudget.NmKeep(matrix.abs(), Step.N, Step.M);
        return use.OutputAxis == 0 ? mask.reshape(weight.shape) : mask.t().contiguous();
    }
}
