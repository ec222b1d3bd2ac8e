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
    protected override void Prune(CompressionContext context, IReadOnlyList<WeightUse> uses)
    {
        var targets = LayerTargets(context, uses);
        using var sequential = context.Layerwise(ObsMethod.Name);
        for (var i = 0; i < uses.Count; i++)
        {
            using var scope = NewDisposeScope();
            var use = uses[i];
            var weight = context.Model.ToTorch(use.Weight);
            context.Progress($"obs: {use.NodeName} ({i + 1}/{uses.Count}), target {targets[i]:P1}");
            var hessian = LayerHessian.Compute(context, use);
            var matrix = LayerMatrix.ToMatrix(weight, use);
            var options = new ObsOptions { Sparsity = Step.N > 0 ? 0 : targets[i], N = Step.N, M = Step.M, BlockSize = Step.BlockSize, Damping = Step.Damping };
            var pruned = LayerMatrix.FromMatrix(LayerObs.PerGroup(matrix, hessian, (rows, h, _) => LayerObs.Run(rows, h, options, takeOver: true).Weight), use);
            Write(context, [use], [weight], [pruned]);
            context.Frontier?.SetWeight(use.Weight.Name, pruned);
        }
    }
}
