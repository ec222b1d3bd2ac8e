using Compress.Core.Onnx;
using Compress.Core.Passes.Pruning;
using Compress.Core.Passes.Quantization;
using Compress.Core.Torch;
using Compress.Spec;
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
public sealed class ObsPruner(PruneStep step) : ICompressionPass
{
    public string Name => "prune/obs";

    public void Apply(CompressionContext context)
    {
        TorchRuntime.EnsureLoaded();
        var uses = PrunedWeights.Select(context, step);
        var targets = LayerTargets(context, uses);
        for (var i = 0; i < uses.Count; i++)
        {
            using var scope = NewDisposeScope();
            var use = uses[i];
            var weight = context.Model.ToTorch(use.Weight);
            context.Progress($"obs: {use.NodeName} ({i + 1}/{uses.Count}), target {targets[i]:P1}");
            var hessian = LayerHessian.Compute(context, use);
            var matrix = LayerMatrix.ToMatrix(weight, use);
            var rowsPerGroup = matrix.shape[0] / hessian.shape[0];
            var options = new ObsOptions { Sparsity = step.N > 0 ? 0 : targets[i], N = step.N, M = step.M, BlockSize = step.BlockSize, Damping = step.Damping };
            var pruned = cat(Enumerable.Range(0, (int)hessian.shape[0])
                .Select(g => LayerObs.Run(matrix.narrow(0, g * rowsPerGroup, rowsPerGroup), hessian[g], options).Weight).ToList(), 0);
            PrunedWeights.Write(context, "obs", [use], [weight], [LayerMatrix.FromMatrix(pruned, use)]);
        }
    }

    private double[] LayerTargets(CompressionContext context, IReadOnlyList<WeightUse> uses)
    {
        if (step.N > 0)
        {
            return uses.Select(_ => 1 - step.N / (double)step.M).ToArray();
        }

        if (step.Scope == "layer")
        {
            return uses.Select(_ => step.Sparsity).ToArray();
        }

        using var scope = NewDisposeScope();
        var magnitudes = uses.Select(u => context.Model.ToTorch(u.Weight).abs()).ToList();
        return SparsityBudget.Global(magnitudes, step.Sparsity, step.MaxLayerSparsity)
            .Select(m => 1 - m.to_type(ScalarType.Float64).mean().item<double>()).ToArray();
    }
}
