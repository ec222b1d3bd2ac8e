using Compress.Core.Diagnostics;
using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;

namespace Compress.Core.Passes.Graph;

/// <summary>
/// Raises a model's ai.onnx opset for passes that emit newer ops (ONNX Runtime fuses QDQ groups into QLinearConv
/// and friends, which exist from opset 10). Ops whose signature changed on the way are rewritten: Clip (min/max
/// attributes → inputs at 11) and Slice (starts/ends/axes attributes → inputs at 10). A model holding an op whose
/// meaning changed in a way not handled here is refused with the op named, never silently altered.
/// </summary>
public static class OpsetUpgrader
{
    // Ops whose semantics or signature change between opset 1 and 11 in ways not rewritten below.
    private static readonly Dictionary<string, int> Breaking = new()
    {
        ["Upsample"] = 10, ["Resize"] = 11, ["Pad"] = 11, ["TopK"] = 10, ["Dropout"] = 10,
        ["Scan"] = 9, ["Split"] = 11, ["Mod"] = 10,
    };

    /// <summary>Whether <see cref="RaiseTo"/> would succeed: no op whose meaning changes on the way.</summary>
    public static bool CanRaiseTo(OnnxModel model, int target)
    {
        var current = model.GetOpsetVersion("") ?? 1;
        return current >= target || Graphs(model.Proto.Graph).SelectMany(g => g.Node)
            .All(n => OnnxModel.NormalizeDomain(n.Domain) != "" || !Breaking.TryGetValue(n.OpType, out var since) || current >= since || since > target);
    }

    public static void RaiseTo(OnnxModel model, int target)
    {
        var current = model.GetOpsetVersion("") ?? 1;
        if (current >= target)
        {
            return;
        }

        foreach (var graph in Graphs(model.Proto.Graph))
        {
            foreach (var node in graph.Node.Where(n => OnnxModel.NormalizeDomain(n.Domain) == ""))
            {
                if (Breaking.TryGetValue(node.OpType, out var since) && current < since && since <= target)
                {
                    throw CompressException.Error(DiagnosticCodes.GraphInvalid,
                        $"the model uses opset {current}; this step needs opset {target}, and node '{OnnxGraph.Describe(node)}' ({node.OpType}) changes meaning between them. " +
                        "Re-export the model at opset 13 or newer.", model.Path);
                }

                if (node.OpType == "Clip" && current < 11)
                {
                    MoveAttributesToInputs(graph, node, ("min", float.MinValue), ("max", float.MaxValue));
                }
                else if (node.OpType == "Slice" && current < 10)
                {
                    MoveSliceAttributes(graph, node);
                }
            }
        }

        model.Proto.OpsetImport.First(o => OnnxModel.NormalizeDomain(o.Domain) == "").Version = target;
        if (model.Proto.IrVersion < 6)
        {
            model.Proto.IrVersion = 6; // opset 11 needs IR version 6
        }
    }

    private static void MoveAttributesToInputs(GraphProto graph, NodeProto node, params (string Name, float Default)[] attributes)
    {
        foreach (var (name, fallback) in attributes)
        {
            var attribute = node.Attribute.FirstOrDefault(a => a.Name == name);
            var value = attribute?.F ?? fallback;
            if (attribute is not null)
            {
                node.Attribute.Remove(attribute);
            }

            var tensor = OnnxTensors.Scalar(Unique(graph, $"{OnnxGraph.Describe(node)}_{name}"), value);
            graph.Initializer.Add(tensor);
            node.Input.Add(tensor.Name);
        }
    }

    private static void MoveSliceAttributes(GraphProto graph, NodeProto node)
    {
        foreach (var name in new[] { "starts", "ends", "axes" })
        {
            var attribute = node.Attribute.FirstOrDefault(a => a.Name == name);
            if (attribute is null)
            {
                continue;
            }

            node.Attribute.Remove(attribute);
            var values = attribute.Ints.ToArray();
            var tensor = OnnxTensors.Create(Unique(graph, $"{OnnxGraph.Describe(node)}_{name}"), values, values.Length);
            graph.Initializer.Add(tensor);
            node.Input.Add(tensor.Name);
        }
    }

    private static string Unique(GraphProto graph, string name)
    {
        var candidate = name;
        for (var i = 1; graph.Initializer.Any(t => t.Name == candidate); i++)
        {
            candidate = $"{name}_{i}";
        }

        return candidate;
    }

    private static IEnumerable<GraphProto> Graphs(GraphProto graph) =>
        graph.Node.SelectMany(n => n.Attribute).SelectMany(a => a.G is null ? a.Graphs : a.Graphs.Append(a.G)).SelectMany(Graphs).Prepend(graph);
}
