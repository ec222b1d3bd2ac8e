using Compress.Core.Onnx;
using Compress.Core.Passes.SecondOrder;
using Compress.Core.Torch;
using Compress.Spec;
using Compress.Spec.Methods;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Passes.Pruning;

/// <summary>
/// <c>prune.method: "wanda"</c> (Sun et al. 2023; algorithms.md §12): score S_ij = |W_ij|·‖X_j‖₂, the weight's
/// magnitude times the L2 norm of its input feature over every calibration row the layer sees (Conv: each im2col
/// column, per group), from the diagonal of XᵀX alone. Each output row loses its lowest-scoring fraction (or keeps the
/// N highest of every M along the input axis); the kept weights are not updated. Layer by layer in graph order, each
/// layer's input taken from the model with the earlier layers already pruned. The layer's sparsity comes from the
/// step's scope as for obs: the target with <c>layer</c>, the layer's share of the global LAMP threshold with
/// <c>global</c>.
/// </summary>
[ImplementsMethod(WandaMethod.Name)]
public sealed class WandaPruner(PruneStep step) : PruningPass(step)
{
    protected internal override Allocation.LayerPruner DatabasePruner => (matrix, hessian, sparsity) => Pruned(matrix, hessian.diagonal(0, 1, 2).sqrt(), sparsity);

    protected override void Prune(CompressionContext context, IReadOnlyList<WeightUse> uses) =>
        EachLayer(context, uses, WandaMethod.Name, (use, matrix, target) =>
        {
            if (Step.N > 0)
            {
                CheckGroups(context, use, matrix.shape[1]);
            }

            return Pruned(matrix, LayerHessian.InputSquares(context, use).sqrt_(), target);
        });

    /// <summary>The matrix with the lowest |W_ij|·‖X_j‖₂ of each row zeroed (<paramref name="norms"/> [groups, cols], up to a common factor): N:M, or the sparsity.</summary>
    private Tensor Pruned(Tensor matrix, Tensor norms, double sparsity)
    {
        var scores = matrix.abs().to_type(ScalarType.Float64) * norms.repeat_interleave(matrix.shape[0] / norms.shape[0], dim: 0);
        return where(Step.N > 0 ? SparsityBudget.NmKeep(scores, Step.N, Step.M) : SparsityBudget.RowKeep(scores, sparsity), matrix, 0f);
    }
}
