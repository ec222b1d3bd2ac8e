using Compress.Core.Passes.Quantization;
using Compress.Core.Torch;
using Compress.Spec;
using static TorchSharp.torch;

namespace Compress.Core.Passes.Pruning;

/// <summary>Writes pruned weights back into the model and records per-layer sparsity and error; shared by every pruner.</summary>
public static class PrunedWeights
{
    /// <param name="originals">The weights before this step.</param>
    /// <param name="pruned">The weights after it (zeros where pruned; other values may have been updated).</param>
    public static void Write(CompressionContext context, string method, IReadOnlyList<WeightUse> uses, IReadOnlyList<Tensor> originals, IReadOnlyList<Tensor> pruned)
    {
        long zeros = 0, total = 0;
        for (var i = 0; i < uses.Count; i++)
        {
            var use = uses[i];
            var values = where(pruned[i].ne(0), pruned[i], 0f); // +0.0, not −0.0: zeros must be all-zero bytes for sparse storage
            var count = values.numel();
            var layerZeros = count - values.count_nonzero().item<long>();
            var record = context.Layer(use.Weight.Name, use.NodeName, use.Node.OpType, count);
            record.Sparsity = layerZeros / (double)count;
            record.RelativeError += WeightQuantization.RelativeError(originals[i], values);
            context.Model.ReplaceData(use.Weight, values.ToOnnx(use.Weight.Name));
            zeros += layerZeros;
            total += count;
        }

        context.Progress($"prune/{method}: {uses.Count} weights, {zeros:N0} of {total:N0} set to zero ({zeros / (double)total:P1})");
    }

    /// <summary>The step's weights, each once (a weight shared by several nodes is pruned at its first use).</summary>
    public static List<WeightUse> Select(CompressionContext context, PruneStep step)
    {
        var uses = WeightSelection.Select(context.Model.Graph, step).GroupBy(u => u.Weight.Name).Select(g => g.First()).ToList();
        if (uses.Count == 0)
        {
            context.Notes.Add($"prune: no {string.Join("/", step.OpTypes)} weights selected; nothing pruned");
        }

        return uses;
    }
}
