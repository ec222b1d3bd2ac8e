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
    protected internal override Allocation.LayerPruner DatabasePruner => (matrix, hessian, sparsity) =>
        LayerObs.PerGroup(matrix, hessian, (rows, h, _) => LayerObs.Run(rows, h, Options(sparsity), takeOver: true).Weight);

    /// <summary>The layer's OBS options: its N:M pattern (the step's), or its unstructured sparsity.</summary>
    private ObsOptions Options(double sparsity) =>
        new()
        {
            Sparsity = Step.N > 0 ? 0 : sparsity, N = Step.N, M = Step.M, BlockSize = Step.BlockSize, Damping = Step.Damping,
            Shrinkage = Step.Option(ObsMethod.Shrinkage, ObsMethod.DefaultShrinkage),
        };

    protected override void Prune(CompressionContext context, IReadOnlyList<WeightUse> uses)
    {
        DenseTargets? dense = null;
        try
        {
            EachLayer(context, uses, ObsMethod.Name, (use, matrix, target) =>
            {
                var options = Options(target);
                if (dense?.Compute(context, use) is var (hessian, shift))
                {
                    // Dense targets: refit to the uncompressed model's response, then OBS on the refit with H̃.
                    matrix = DenseTargets.Refit(matrix, hessian, shift, Step.Damping);
                    shift.Dispose();
                    return LayerObs.PerGroup(matrix, hessian, (rows, h, _) => LayerObs.Run(rows, h, options, takeOver: true).Weight);
                }

                return LayerObs.PerGroup(matrix, LayerHessian.Compute(context, use), (rows, h, _) => LayerObs.Run(rows, h, options, takeOver: true).Weight);
            }, () => dense = Step.Option(ObsMethod.DenseTargets, 1) != 0 ? DenseTargets.TryStart(context, ObsMethod.Name) : null);
        }
        finally
        {
            dense?.Dispose();
        }
    }
}
