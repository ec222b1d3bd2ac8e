using Compress.Core.Onnx;
using Compress.Core.Torch;
using static TorchSharp.torch;

namespace Compress.Core.Passes.Graph;

/// <summary>
/// Exporters run without constant folding (PyTorch's <c>do_constant_folding=False</c>, some tracing exporters) feed a
/// Linear layer's weight to its MatMul through a <c>Transpose</c> node, so the MatMul's weight is no initializer and
/// every weight method would pass it by. The transpose is applied to the stored weight once (same values, same
/// name, the new layout) and the node removed. A weight read elsewhere too (tied embeddings) is left as it is:
/// folding would store it twice.
/// </summary>
public static class TransposedWeights
{
    public static int Fold(OnnxModel model)
    {
        var graph = model.Graph;
        var folded = 0;
        foreach (var node in graph.Nodes.ToList())
        {
            if (node.OpType != "Transpose" || OnnxModel.NormalizeDomain(node.Domain) != "" || node.Input.Count != 1 || node.Output.Count != 1
                || graph.GetInitializer(node.Input[0]) is not { } weight || graph.Proto.Input.Any(i => i.Name == weight.Name)
                || graph.GetConsumers(weight.Name).Count != 1 || graph.IsGraphOutput(node.Output[0])
                || !graph.GetConsumers(node.Output[0]).All(c => c.Input.Contains(node.Output[0]))
                || Compress.Core.Torch.OnnxTorchConversion.ScalarTypeOf((Onnx.Proto.TensorProto.Types.DataType)weight.DataType) is null)
            {
                continue;
            }

            TorchRuntime.EnsureLoaded(); // before any torch call: it applies the native-library fix (Debian 12)
            var rank = weight.Dims.Count;
            var permutation = node.Ints("perm") ?? Enumerable.Range(0, rank).Reverse().Select(i => (long)i).ToArray();
            using (NewDisposeScope())
            {
                var transposed = model.ToTorch(weight).permute(permutation).contiguous();
                model.ReplaceData(weight, transposed.ToOnnx(weight.Name));
                weight.Dims.Clear();
                weight.Dims.Add(transposed.shape);
            }

            var output = node.Output[0];
            graph.Remove(node);
            graph.RedirectConsumers(output, weight.Name);
            folded++;
        }

        return folded;
    }
}
