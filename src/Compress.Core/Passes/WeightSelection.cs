using System.Text.RegularExpressions;
using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Spec;

namespace Compress.Core.Passes;

/// <summary>A weight read by a node: which input, and which axis holds the output channels.</summary>
public sealed record WeightUse(NodeProto Node, int InputIndex, TensorProto Weight, int OutputAxis)
{
    public string NodeName => OnnxGraph.Describe(Node);
}

/// <summary>
/// Finds the weights a step applies to: nodes of the step's op types whose name matches <c>include</c> (if given)
/// and neither name nor op type matches <c>exclude</c>, reading a float initializer as their weight. The weight
/// input and channel axis per op type come from a table of small handlers.
/// </summary>
public static class WeightSelection
{
    private static readonly Dictionary<string, Func<NodeProto, (int Input, int OutputAxis)?>> WeightInputs = new()
    {
        ["Conv"] = _ => (1, 0),
        ["Gemm"] = n => (1, n.Int("transB", 0) == 1 ? 0 : 1),
        ["MatMul"] = _ => (1, 1),
    };

    public static IReadOnlyList<WeightUse> Select(OnnxGraph graph, SpecStep step)
    {
        var include = step.Include.Select(Glob).ToList();
        var exclude = step.Exclude.Select(Glob).ToList();
        var uses = new List<WeightUse>();
        foreach (var node in graph.Nodes)
        {
            if (!step.OpTypes.Contains(node.OpType) || !WeightInputs.TryGetValue(node.OpType, out var locate) || !string.IsNullOrEmpty(node.Domain))
            {
                continue;
            }

            var name = OnnxGraph.Describe(node);
            if ((include.Count > 0 && !include.Any(g => g.IsMatch(name))) || exclude.Any(g => g.IsMatch(name) || g.IsMatch(node.OpType)))
            {
                continue;
            }

            if (locate(node) is not { } where || where.Input >= node.Input.Count)
            {
                continue;
            }

            var weight = graph.GetInitializer(node.Input[where.Input]);
            if (weight is null || weight.DataType != (int)TensorProto.Types.DataType.Float || weight.Dims.Count < 2)
            {
                continue;
            }

            uses.Add(new WeightUse(node, where.Input, weight, where.OutputAxis));
        }

        return uses;
    }

    /// <summary>MatMul, or Gemm computing plain A·B (+C): no transA, alpha = beta = 1 — what MatMul-style kernels can replace.</summary>
    public static bool IsPlainMatMul(NodeProto node) =>
        node.OpType == "MatMul"
        || (node.OpType == "Gemm" && node.Int("transA", 0) == 0 && node.Float("alpha", 1f) == 1f && node.Float("beta", 1f) == 1f);

    /// <summary>Whether a node is selected by the step's include/exclude lists (for passes that select nodes, not weights).</summary>
    public static bool Matches(NodeProto node, SpecStep step) =>
        NameMatches(OnnxGraph.Describe(node), step) && !step.Exclude.Select(Glob).Any(g => g.IsMatch(node.OpType));

    /// <summary>Whether a name (a node's, or a TorchSharp/TorchScript parameter's) passes the step's include/exclude globs.</summary>
    public static bool NameMatches(string name, SpecStep step) =>
        (step.Include.Count == 0 || step.Include.Select(Glob).Any(g => g.IsMatch(name))) && !step.Exclude.Select(Glob).Any(g => g.IsMatch(name));

    private static Regex Glob(string pattern) =>
        new("^" + Regex.Escape(pattern).Replace("\\*", ".*").Replace("\\?", ".") + "$", RegexOptions.CultureInvariant);
}
