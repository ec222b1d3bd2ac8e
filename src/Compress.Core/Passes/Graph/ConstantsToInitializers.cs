using Compress.Core.Onnx;

namespace Compress.Core.Passes.Graph;

/// <summary>
/// Some exporters (paddle2onnx, older PyTorch) keep weights in <c>Constant</c> nodes. Moving their values to
/// initializers changes nothing for the runtime and lets every pass find weights in one place.
/// </summary>
public static class ConstantsToInitializers
{
    public static int Apply(OnnxModel model)
    {
        var graph = model.Graph;
        var moved = 0;
        foreach (var node in graph.Nodes.ToList())
        {
            if (node.OpType != "Constant" || OnnxModel.NormalizeDomain(node.Domain) != "" || node.Output.Count != 1
                || node.Attribute.Count != 1 || node.Attribute[0].Name != "value" || node.Attribute[0].T is null)
            {
                continue;
            }

            var tensor = node.Attribute[0].T.Clone();
            tensor.Name = node.Output[0];
            graph.Remove(node);
            graph.AddInitializer(tensor);
            moved++;
        }

        return moved;
    }
}
