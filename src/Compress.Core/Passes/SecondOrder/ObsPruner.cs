using Compress.Core.Onnx;
using Compress.Core.Passes.Pruning;
using Compress.Core.Passes.Quantization;
using Compress.Core.Torch;
using Compress.Spec;
using Compress.Spec.Methods;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Passes.SecondOrder;

/// <summary>
/// <c>prune.method: "obs"</c> (alias <c>"sparsegpt"</c>): SparseGPT, layer by layer in graph order, each layer's
/// Hessian taken from the model with the earlier layers already pruned. Unstructured or N:M. Scope
/// <c>layer</c> gives every layer the target sparsity; <c>global</c> takes each layer's share from one global
/// magnitude threshold (capped at <c>maxLayerSparsity</c>), then lets OBS choose which weights and how to
/// compensate within the layer.
/// </summary>
[ImplementsMethod(ObsMethod.Name)]
public sealed class ObsPruner(PruneStep step) : PruningPass(step)
{
    /// <summary>
    /// The allocation's database prunes without shrinkage: it does not know each layer's calibration rows, and shrinking
    /// there measured no better (algorithms.md §4).
    /// </summary>
    protected internal override Allocation.LayerPruner DatabasePruner => (matrix, hessian, sparsity) =>
        LayerObs.PerGroup(matrix, hessian, (rows, h, _) => LayerObs.Run(rows, h, Options(sparsity, shrinkage: 0), takeOver: true).Weight);

    /// <summary>The layer's OBS options: its N:M pattern (the step's), or its unstructured sparsity.</summary>
    private ObsOptions Options(double sparsity, double shrinkage) =>
        new() { Sparsity = Step.N > 0 ? 0 : sparsity, N = Step.N, M = Step.M, BlockSize = Step.BlockSize, Damping = Step.Damping, Shrinkage = shrinkage };

    /// <summary>
    /// The step's <c>shrinkage</c> for a layer whose Hessian came from fewer calibration rows than it has inputs (known
    /// once its Hessian is computed: <see cref="LayerHessian.NoteRank"/>), none for the others, whose Hessian the rows
    /// determine.
    /// </summary>
    private double Shrinkage(CompressionContext context, WeightUse use) =>
        context.RankDeficient.ContainsKey(use.NodeName) ? Step.Option(ObsMethod.Shrinkage, ObsMethod.DefaultShrinkage) : 0;

    protected override void Prune(CompressionContext context, IReadOnlyList<WeightUse> uses)
    {
        DenseTargets? dense = null;
        try
        {
            EachLayer(context, uses, ObsMethod.Name, (use, matrix, target) =>
            {
                Tensor hessian;
                if (dense?.Compute(context, use) is var (refitHessian, shift))
                {
                    // Dense targets: refit to the uncompressed model's response, then OBS on the refit with H̃.
                    matrix = DenseTargets.Refit(matrix, refitHessian, shift, Step.Damping);
                    shift.Dispose();
                    hessian = refitHessian;
                }
                else
                {
                    hessian = LayerHessian.Compute(context, use);
                }

                // After the Hessian: the shrinkage depends on the rows it was taken from (LayerHessian.NoteRank).
                var options = Options(target, Shrinkage(context, use));
                return LayerObs.PerGroup(matrix, hessian, (rows, h, _) => LayerObs.Run(rows, h, options, takeOver: true).Weight);
            }, () => dense = Step.Option(ObsMethod.DenseTargets, 1) != 0 ? DenseTargets.TryStart(context, ObsMethod.Name) : null);
        }
        finally
        {
            dense?.Dispose();
        }
    }
}
