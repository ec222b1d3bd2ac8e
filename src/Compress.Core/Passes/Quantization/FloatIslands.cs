using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;

namespace Compress.Core.Passes.Quantization;

public enum IslandKind
{
    /// <summary>LayerNormalization (one op, or ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div with its Mul/Add affine) and the residual Add feeding it.</summary>
    LayerNorm,

    /// <summary>A Softmax over attention scores, the scaling and mask Add before it, and the ops making the mask bias.</summary>
    Softmax,

    /// <summary>GELU written out: x·½(1 + erf(x/√2)) or its tanh approximation.</summary>
    Gelu,

    /// <summary>The Add of a constant bias to a MatMul's output (a Linear layer on [N, T, D] exports as MatMul + Add).</summary>
    MatMulBias,
}

/// <summary>
/// One region kept float. A LayerNorm also names the tensor it writes and its affine parameters (constants, or null),
/// which activation smoothing rescales.
/// </summary>
public sealed record FloatIsland(IslandKind Kind, IReadOnlyList<NodeProto> Nodes, string Output, string? Gamma = null, string? Beta = null);

/// <summary>
/// The parts of a graph that static int8 keeps float when the step leaves <c>opTypes</c> to its defaults
/// (algorithms.md §13), most of them a transformer's: their tensors have ranges one int8 scale cannot hold (the mask
/// bias of −10000 beside scores of a few units, the residual stream's outlier channels) and ONNX Runtime has no
/// integer kernel for them, so Q/DQ pairs there cost precision and time for nothing; the same holds for a MatMul's
/// bias Add, which ONNX Runtime folds into the integer MatMul. Found from the graph's structure, not from node names.
/// A model without LayerNorm, attention Softmax, Erf/Tanh gating or MatMul + Add (a CNN, an MLP of Gemms) has none.
/// </summary>
public sealed class FloatIslands
{
    private static readonly HashSet<string> VarianceOps = ["Pow", "Mul", "ReduceMean", "Add", "Sqrt"];
    private static readonly HashSet<string> ScoreOps = ["Add", "Sub", "Mul", "Div", "Where"];
    private static readonly HashSet<string> MaskOps = ["Cast", "Sub", "Mul", "Add", "Div", "Neg", "Not", "Where", "Equal", "Unsqueeze", "Reshape", "Expand", "Squeeze", "Slice"];
    private static readonly HashSet<string> GeluInputOps = ["Div", "Mul", "Add", "Pow"];

    private readonly OnnxGraph _graph;
    private readonly List<FloatIsland> _islands = [];
    private readonly Dictionary<NodeProto, IslandKind> _kinds = new(ReferenceEqualityComparer.Instance);

    private FloatIslands(OnnxGraph graph) => _graph = graph;

    public IReadOnlyList<FloatIsland> Islands => _islands;

    public bool Contains(NodeProto node) => _kinds.ContainsKey(node);

    public static FloatIslands Find(OnnxGraph graph)
    {
        var found = new FloatIslands(graph);
        foreach (var node in graph.TopologicalOrder().Where(n => string.IsNullOrEmpty(n.Domain)))
        {
            var island = node.OpType switch
            {
                "LayerNormalization" => found.LayerNormOp(node),
                "ReduceMean" => found.DecomposedLayerNorm(node),
                "Softmax" => found.AttentionSoftmax(node),
                "Erf" or "Tanh" => found.Gelu(node),
                "Add" => found.MatMulBias(node),
                _ => null,
            };
            if (island is not null && !island.Nodes.Any(found.Contains))
            {
                found.Add(island);
            }
        }

        found.AddMaskBias();
        return found;
    }

    /// <summary>One line per kind for the report: how many islands, how many nodes, and why they stay float.</summary>
    public IEnumerable<string> Describe()
    {
        foreach (var group in _islands.GroupBy(i => i.Kind))
        {
            var nodes = group.Sum(i => i.Nodes.Count);
            yield return group.Key switch
            {
                IslandKind.LayerNorm => $"static: {group.Count()} LayerNorms kept float ({nodes} nodes with the residual Adds feeding them): mean and variance need float, and the residual stream's outlier channels would set one int8 scale for all",
                IslandKind.Softmax => $"static: {group.Count()} attention Softmaxes kept float ({nodes} nodes with the score scaling, the mask Add and the mask bias): a mask of −10000 beside scores of a few units leaves no int8 levels for the scores",
                IslandKind.Gelu => $"static: {group.Count()} GELUs kept float ({nodes} Erf/Tanh chain nodes): no integer kernel, and each Q/DQ pair inside the chain only adds rounding",
                _ => $"static: {group.Count()} MatMul bias Adds kept float: ONNX Runtime adds the bias inside its integer MatMul (MatMulIntegerToFloat), where a Q/DQ pair before the Add would round the MatMul's output to int8 and leave the Add on its own",
            };
        }
    }

    /// <summary>Adds a node made after the search (the Mul by which activation smoothing restores a LayerNorm's output) to that island.</summary>
    internal void Join(FloatIsland island, NodeProto node)
    {
        var index = _islands.FindIndex(i => i.Kind == island.Kind && i.Output == island.Output);
        _islands[index] = _islands[index] with { Nodes = [.. _islands[index].Nodes, node] };
        _kinds[node] = island.Kind;
    }

    private void Add(FloatIsland island)
    {
        _islands.Add(island);
        foreach (var node in island.Nodes)
        {
            _kinds[node] = island.Kind;
        }
    }

    private bool IsConstant(string tensor) =>
        tensor.Length == 0 || _graph.GetInitializer(tensor) is not null || _graph.GetProducer(tensor)?.OpType == "Constant";

    private List<string> Variable(NodeProto node) => node.Input.Where(i => !IsConstant(i)).ToList();

    private NodeProto? SoleConsumer(string tensor) =>
        _graph.GetConsumers(tensor) is [var only] && !_graph.IsGraphOutput(tensor) ? only : null;

    private FloatIsland LayerNormOp(NodeProto node) =>
        WithResidual(node.Input[0], [node], node.Output[0],
            node.Input.Count > 1 && IsConstant(node.Input[1]) ? node.Input[1] : null,
            node.Input.Count > 2 && IsConstant(node.Input[2]) ? node.Input[2] : null);

    /// <summary>mean = ReduceMean(x); d = x − mean; y = d / Sqrt(ReduceMean(d²) + ε), then optionally y·γ + β.</summary>
    private FloatIsland? DecomposedLayerNorm(NodeProto mean)
    {
        var x = mean.Input[0];
        var sub = _graph.GetConsumers(mean.Output[0]).FirstOrDefault(c => c.OpType == "Sub" && c.Input[0] == x && c.Input[1] == mean.Output[0]);
        if (sub is null)
        {
            return null;
        }

        var centred = sub.Output[0];
        var div = _graph.GetConsumers(centred).FirstOrDefault(c => c.OpType == "Div" && c.Input[0] == centred && _graph.GetProducer(c.Input[1])?.OpType == "Sqrt");
        if (div is null)
        {
            return null;
        }

        // The variance chain: from the Sqrt back to the centred values, through Pow/Mul, ReduceMean and the ε Add only.
        var nodes = new List<NodeProto> { mean, sub };
        var stack = new Stack<string>([div.Input[1]]);
        while (stack.TryPop(out var tensor))
        {
            if (tensor == centred || IsConstant(tensor))
            {
                continue;
            }

            if (_graph.GetProducer(tensor) is not { } producer || !VarianceOps.Contains(producer.OpType) || nodes.Count > 8)
            {
                return null;
            }

            if (!nodes.Contains(producer))
            {
                nodes.Add(producer);
                producer.Input.ToList().ForEach(stack.Push);
            }
        }

        if (!nodes.Skip(2).Any(n => n.OpType == "ReduceMean"))
        {
            return null;
        }

        nodes.Add(div);
        var output = div.Output[0];
        string? gamma = null, beta = null;
        if (SoleConsumer(output) is { OpType: "Mul" } scale && Variable(scale) is [var g] && g == output)
        {
            gamma = scale.Input.First(i => i != output);
            nodes.Add(scale);
            output = scale.Output[0];
            if (SoleConsumer(output) is { OpType: "Add" } shift && Variable(shift) is [var b] && b == output)
            {
                beta = shift.Input.First(i => i != output);
                nodes.Add(shift);
                output = shift.Output[0];
            }
        }

        return WithResidual(x, nodes, output, gamma, beta);
    }

    /// <summary>
    /// The residual sum a LayerNorm normalises (an Add of two computed tensors), or the embedding sum of several tables
    /// (Adds of Adds, each read only by the next). A pre-LN encoder's residual Add that an earlier LayerNorm already
    /// claimed stays in that island.
    /// </summary>
    private FloatIsland WithResidual(string input, List<NodeProto> nodes, string output, string? gamma, string? beta)
    {
        var sums = new List<NodeProto>();
        var pending = new Stack<(string Tensor, bool First)>([(input, true)]);
        while (pending.TryPop(out var at) && sums.Count < 4)
        {
            if (_graph.GetProducer(at.Tensor) is { OpType: "Add" } sum && string.IsNullOrEmpty(sum.Domain) && Variable(sum).Count == 2
                && !Contains(sum) && (at.First || SoleConsumer(at.Tensor) is not null))
            {
                sums.Add(sum);
                sum.Input.ToList().ForEach(i => pending.Push((i, false)));
            }
        }

        nodes.InsertRange(0, sums);
        return new FloatIsland(IslandKind.LayerNorm, nodes, output, gamma, beta);
    }

    /// <summary>
    /// Softmax(mask + scores·c) where scores come from a MatMul of two activations (Q·Kᵀ): the Softmax and the
    /// elementwise ops between it and that MatMul. A Softmax over class scores is no island (and stays float anyway).
    /// </summary>
    private FloatIsland? AttentionSoftmax(NodeProto softmax)
    {
        var nodes = new List<NodeProto> { softmax };
        var tensor = softmax.Input[0];
        for (var depth = 0; depth < 4; depth++)
        {
            var producer = _graph.GetProducer(tensor);
            if (producer is { OpType: "MatMul" } && Variable(producer).Count == 2)
            {
                return new FloatIsland(IslandKind.Softmax, nodes, softmax.Output[0]);
            }

            if (producer is null || !ScoreOps.Contains(producer.OpType) || SoleConsumer(tensor) is null)
            {
                return null;
            }

            nodes.Add(producer);
            var inputs = Variable(producer);
            tensor = inputs.Count == 1 ? inputs[0] : inputs.FirstOrDefault(ReachesScores) ?? "";
        }

        return null;
    }

    private bool ReachesScores(string tensor)
    {
        for (var depth = 0; depth < 4 && _graph.GetProducer(tensor) is { } producer; depth++)
        {
            if (producer.OpType == "MatMul")
            {
                return Variable(producer).Count == 2;
            }

            if (!ScoreOps.Contains(producer.OpType) || Variable(producer) is not [var only])
            {
                return false;
            }

            tensor = only;
        }

        return false;
    }

    /// <summary>
    /// The ops making the mask bias ((1 − mask)·−10000 and its Cast/Unsqueeze): those whose every reader is already in
    /// a Softmax island (the bias is shared by all layers), joined to the first of them.
    /// </summary>
    private void AddMaskBias()
    {
        var softmaxes = _islands.Where(i => i.Kind == IslandKind.Softmax).ToList();
        if (softmaxes.Count == 0)
        {
            return;
        }

        var first = softmaxes[0];
        var added = new List<NodeProto>();
        for (var changed = true; changed;)
        {
            changed = false;
            foreach (var node in _graph.Nodes.Where(n => MaskOps.Contains(n.OpType) && string.IsNullOrEmpty(n.Domain) && !Contains(n)))
            {
                var readers = node.Output.SelectMany(_graph.GetConsumers).ToList();
                if (readers.Count > 0 && readers.All(r => _kinds.TryGetValue(r, out var kind) && kind == IslandKind.Softmax)
                    && !node.Output.Any(_graph.IsGraphOutput))
                {
                    _kinds[node] = IslandKind.Softmax;
                    added.Add(node);
                    changed = true;
                }
            }
        }

        if (added.Count > 0)
        {
            _islands[_islands.IndexOf(first)] = first with { Nodes = [.. first.Nodes, .. added] };
        }
    }

    /// <summary>Add(MatMul(x, W), b) with W and b constant.</summary>
    private FloatIsland? MatMulBias(NodeProto add)
    {
        var inputs = Variable(add);
        return inputs is [var product] && add.Input.Count == 2 && _graph.GetProducer(product) is { OpType: "MatMul" } matmul
            && string.IsNullOrEmpty(matmul.Domain) && Variable(matmul).Count == 1 && SoleConsumer(product) == add
            ? new FloatIsland(IslandKind.MatMulBias, [add], add.Output[0])
            : null;
    }

    /// <summary>
    /// GELU around an Erf (or Tanh): back from it to the input x (the tensor the chain reads twice), forward through
    /// the +1 and the products with x and ½ to the output. Without the product by x it is no GELU and no island.
    /// </summary>
    private FloatIsland? Gelu(NodeProto anchor)
    {
        var nodes = new List<NodeProto> { anchor };
        var x = InputOfGelu(anchor, nodes);
        if (x is null)
        {
            return null;
        }

        var tensor = anchor.Output[0];
        var gated = false;
        for (var depth = 0; depth < 4 && SoleConsumer(tensor) is { OpType: "Add" or "Mul" } next; depth++)
        {
            var other = next.Input.Count == 2 ? next.Input[next.Input[0] == tensor ? 1 : 0] : "";
            if (other == x)
            {
                gated = true;
            }
            else if (_graph.GetProducer(other) is { OpType: "Mul" } half && half.Input.Contains(x) && Variable(half).Count == 1 && SoleConsumer(other) == next)
            {
                nodes.Add(half); // ½·x computed beside the chain
                gated = true;
            }
            else if (!IsConstant(other) || (gated && next.OpType == "Add"))
            {
                break;
            }

            nodes.Add(next);
            tensor = next.Output[0];
        }

        return gated ? new FloatIsland(IslandKind.Gelu, nodes, tensor) : null;
    }

    /// <summary>x of a GELU: back from the anchor through x/√2 (or the tanh form's c·(x + 0.044715·x³)) to the tensor read more than once.</summary>
    private string? InputOfGelu(NodeProto anchor, List<NodeProto> nodes)
    {
        var tensor = anchor.Input[0];
        for (var depth = 0; depth < 4; depth++)
        {
            if (_graph.GetConsumers(tensor).Count >= 2)
            {
                return tensor;
            }

            if (_graph.GetProducer(tensor) is not { } producer || !GeluInputOps.Contains(producer.OpType))
            {
                return null;
            }

            nodes.Add(producer);
            var inputs = Variable(producer);
            if (inputs.Count == 1)
            {
                tensor = inputs[0];
                continue;
            }

            // x + 0.044715·x³: x is the input read elsewhere too; the cubic side joins the island.
            var x = inputs.FirstOrDefault(i => _graph.GetConsumers(i).Count >= 2);
            var side = inputs.FirstOrDefault(i => i != x);
            while (x is not null && side is not null && side != x && _graph.GetProducer(side) is { } s && GeluInputOps.Contains(s.OpType) && Variable(s) is [var inner] && nodes.Count < 8)
            {
                nodes.Add(s);
                side = inner;
            }

            return side == x ? x : null;
        }

        return null;
    }
}
