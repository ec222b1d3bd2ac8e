using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;

namespace Compress.Core.Passes.Pruning.Channels;

/// <summary>
/// What the graph alone says about a value's shape, for the few ops an attention mask is built with (Cast, Unsqueeze,
/// element-wise arithmetic, from a graph input or a constant): its rank and each size known to be a number, or null.
/// Enough to see that a mask added to the scores has one value for all heads; anything else is unknown.
/// </summary>
internal static class StaticShape
{
    private static readonly HashSet<string> SameShape = ["Cast", "Neg", "Not", "Sqrt", "Exp", "Log", "Relu", "Identity", "Sigmoid", "Tanh", "Erf", "Abs", "Reciprocal"];

    private static readonly HashSet<string> Broadcast = ["Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Where", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor"];

    /// <summary>Ops whose output has the shape of their first input.</summary>
    private static readonly HashSet<string> KeepShape = ["LayerNormalization", "Softmax", "LogSoftmax", "Dropout", "Gelu", "Clip", "BatchNormalization",
        "InstanceNormalization", "LeakyRelu", "Elu", "Softplus", "HardSigmoid", "Celu", "Selu"];

    /// <summary>
    /// The value's sizes (null where not known), or null when even its rank is not. <paramref name="memo"/> may be shared
    /// between calls on one graph (a transformer's layers chain through their residuals, so each value is followed once).
    /// </summary>
    public static long?[]? Of(OnnxGraph graph, string value, Dictionary<string, long?[]?>? memo = null, int depth = 0)
    {
        if (memo is not null && memo.TryGetValue(value, out var known))
        {
            return known;
        }

        if (depth > 256)
        {
            return null; // not remembered: a call from nearer the input may find it
        }

        var dims = Sizes(graph, value, memo, depth);
        if (memo is not null)
        {
            memo[value] = dims;
        }

        return dims;
    }

    private static long?[]? Sizes(OnnxGraph graph, string value, Dictionary<string, long?[]?>? memo, int depth)
    {
        if (graph.GetInitializer(value) is { } constant)
        {
            return constant.Dims.Select(d => (long?)d).ToArray();
        }

        var node = graph.GetProducer(value);
        if (node is null)
        {
            var input = graph.Proto.Input.FirstOrDefault(i => i.Name == value);
            return input?.Type?.TensorType?.Shape?.Dim.Select(d => d.HasDimValue ? d.DimValue : (long?)null).ToArray();
        }

        if (!string.IsNullOrEmpty(node.Domain))
        {
            return null;
        }

        long?[]? In(int i) => node.Input.Count > i && node.Input[i].Length > 0 ? Of(graph, node.Input[i], memo, depth + 1) : null;
        if (node.Output[0] != value && node.OpType != "Split")
        {
            return null;
        }

        if (SameShape.Contains(node.OpType) || KeepShape.Contains(node.OpType))
        {
            return In(0);
        }

        switch (node.OpType)
        {
            case "Constant":
                return node.TensorValue("value")?.Dims.Select(d => (long?)d).ToArray();
            case "Unsqueeze":
                return UnsqueezeSizes(graph, node, In(0));
            case "Transpose":
                return In(0) is { } data ? (node.Ints("perm") ?? Enumerable.Range(0, data.Length).Reverse().Select(i => (long)i).ToArray()) is var perm
                    && perm.Length == data.Length && perm.All(p => p >= 0 && p < data.Length) ? perm.Select(p => data[p]).ToArray() : null : null;
            case "ReduceMean" or "ReduceSum" or "ReduceMax" or "ReduceMin" when node.Input.Count == 1:
                return Reduced(node, In(0));
            case "MatMul":
                if (In(0) is not { Length: >= 2 } a || In(1) is not { Length: >= 2 } b)
                {
                    return null;
                }

                var batch = Broadcasted([a[..^2], b[..^2]]);
                return [.. batch, a[^2], b[^1]];
            case "Gemm":
                var left = In(0);
                var right = In(1);
                return left is not null && left.Length != 2 || right is not { Length: 2 } ? null
                    : [left?[node.Int("transA", 0) == 1 ? 1 : 0], right[node.Int("transB", 0) == 1 ? 0 : 1]];
            case "Slice":
                // The rank stays; the sliced axes' sizes are not followed.
                if (In(0) is not { } sliced)
                {
                    return null;
                }

                var axes = node.Input.Count > 3 && node.Input[3].Length > 0 ? (graph.GetInitializer(node.Input[3]) is { } ax ? Int64s(ax) : null)
                    : Enumerable.Range(0, sliced.Length).Select(i => (long)i).ToArray();
                var result = sliced.ToArray();
                for (var i = 0; i < result.Length; i++)
                {
                    if (axes is null || axes.Any(x => x == i || x + result.Length == i))
                    {
                        result[i] = null;
                    }
                }

                return result;
            case "Split":
                if (In(0) is not { } whole)
                {
                    return null;
                }

                var axis = node.Int("axis", 0);
                var split = whole.ToArray();
                if (axis < -split.Length || axis >= split.Length)
                {
                    return null;
                }

                split[axis < 0 ? axis + split.Length : axis] = null;
                return split;
            case "Reshape":
                return Reshaped(graph, node, In(0), memo);
            case "Shape" when node.Attribute.Count == 0:
                return In(0) is { } shaped ? [shaped.Length] : null;
            case "Gather":
                if (In(0) is not { } gathered || In(1) is not { } indices)
                {
                    return null;
                }

                var at = (int)node.Int("axis", 0);
                at = at < 0 ? at + gathered.Length : at;
                return at < 0 || at >= gathered.Length ? null : [.. gathered[..at], .. indices, .. gathered[(at + 1)..]];
        }

        if (Broadcast.Contains(node.OpType))
        {
            var shapes = new List<long?[]>();
            for (var i = 0; i < node.Input.Count; i++)
            {
                if (In(i) is not { } shape)
                {
                    return null;
                }

                shapes.Add(shape);
            }

            return Broadcasted(shapes);
        }

        return null;
    }

    /// <summary>Numpy broadcasting from the end: 1 where every input has 1 or lacks the axis, a number where one input has it, else unknown.</summary>
    private static long?[] Broadcasted(List<long?[]> shapes)
    {
        var rank = shapes.Max(s => s.Length);
        var result = new long?[rank];
        for (var i = 1; i <= rank; i++)
        {
            var sizes = shapes.Where(s => s.Length >= i).Select(s => s[^i]).ToList();
            result[^i] = sizes.All(s => s == 1) ? 1 : sizes.FirstOrDefault(s => s is > 1);
        }

        return result;
    }

    private static long?[]? UnsqueezeSizes(OnnxGraph graph, NodeProto node, long?[]? inner)
    {
        var axes = UnsqueezeAxes(graph, node);
        if (axes is null || inner is null)
        {
            return null;
        }

        var rank = inner.Length + axes.Length;
        var normal = axes.Select(x => x < 0 ? x + rank : x).ToHashSet();
        var dims = new long?[rank];
        var next = 0;
        for (var i = 0; i < rank; i++)
        {
            if (!normal.Contains(i) && next >= inner.Length)
            {
                return null;
            }

            dims[i] = normal.Contains(i) ? 1 : inner[next++];
        }

        return dims;
    }

    /// <summary>A reduction with its axes as an attribute (before opset 18): 1 on those axes with keepdims, else they go.</summary>
    private static long?[]? Reduced(NodeProto node, long?[]? input)
    {
        if (input is null)
        {
            return null;
        }

        var axes = (node.Ints("axes") ?? Enumerable.Range(0, input.Length).Select(i => (long)i).ToArray()).Select(a => a < 0 ? a + input.Length : a).ToHashSet();
        if (axes.Any(a => a < 0 || a >= input.Length))
        {
            return null;
        }

        var keep = node.Int("keepdims", 1) != 0;
        return input.Select((d, i) => axes.Contains(i) ? (keep ? 1L : (long?)-1) : d).Where(d => d != -1).ToArray();
    }

    /// <summary>A Reshape's output sizes from its target shape where the entries can be worked out (0 copies the input's, −1 is not followed).</summary>
    private static long?[]? Reshaped(OnnxGraph graph, NodeProto node, long?[]? input, Dictionary<string, long?[]?>? memo)
    {
        if (node.Input.Count < 2 || node.Int("allowzero", 0) != 0)
        {
            return null;
        }

        long?[]? target;
        if (ShapeEntries.Evaluate(graph, node.Input[1], memo) is { } values)
        {
            target = values.Select(v => (long?)v).ToArray();
        }
        else if (graph.GetProducer(node.Input[1]) is { OpType: "Concat" } concat)
        {
            // Each part one entry (an Unsqueezed scalar) or a constant; the entries worked out where they can be.
            var parts = new List<long?>();
            foreach (var part in concat.Input)
            {
                if (ShapeEntries.Evaluate(graph, part, memo) is { } known)
                {
                    parts.AddRange(known.Select(v => (long?)v));
                }
                else if (graph.GetProducer(part) is { OpType: "Unsqueeze" } u && Of(graph, u.Input[0], memo) is { Length: 0 })
                {
                    parts.Add(null);
                }
                else
                {
                    return null;
                }
            }

            target = [.. parts];
        }
        else
        {
            return null;
        }

        return target.Select((v, i) => v switch
        {
            0 => input is not null && i < input.Length ? input[i] : null,
            < 0 => null,
            _ => v,
        }).ToArray();
    }

    /// <summary>Ops whose first output has the rank of their first input.</summary>
    private static readonly HashSet<string> SameRank = [.. KeepShape, "Transpose", "Slice"];

    /// <summary>
    /// A lower bound on the value's rank, or null: exact from the graph's inputs, outputs, value_info and constants,
    /// followed through rank-keeping ops, broadcasts (the largest known input rank), MatMul, Gather, Unsqueeze and a
    /// Reshape to a constant shape. <paramref name="memo"/> is shared between calls on one graph (a transformer's layers
    /// chain through their residuals, so each value is followed once).
    /// </summary>
    public static int? MinRank(OnnxGraph graph, string value, Dictionary<string, int?> memo, int depth = 0)
    {
        if (memo.TryGetValue(value, out var known))
        {
            return known;
        }

        if (memo.Count == 0)
        {
            foreach (var info in graph.Proto.Input.Concat(graph.Proto.Output).Concat(graph.Proto.ValueInfo))
            {
                if (info.Type?.TensorType?.Shape is { } shape)
                {
                    memo[info.Name] = shape.Dim.Count;
                }
            }

            if (memo.TryGetValue(value, out known))
            {
                return known;
            }
        }

        if (depth > 256)
        {
            return null; // not remembered: a call from nearer the input may find it
        }

        var rank = Infer(graph, value, memo, depth);
        memo[value] = rank;
        return rank;
    }

    private static int? Infer(OnnxGraph graph, string value, Dictionary<string, int?> memo, int depth)
    {
        if (graph.GetInitializer(value) is { } constant)
        {
            return constant.Dims.Count;
        }

        if (graph.GetProducer(value) is not { } node || !string.IsNullOrEmpty(node.Domain))
        {
            return null;
        }

        int? Of(int input) => node.Input.Count > input && node.Input[input].Length > 0 ? MinRank(graph, node.Input[input], memo, depth + 1) : null;
        if (node.Output[0] != value)
        {
            return null;
        }

        if (SameShape.Contains(node.OpType) || SameRank.Contains(node.OpType))
        {
            return Of(0);
        }

        if (Broadcast.Contains(node.OpType))
        {
            var ranks = node.Input.Select((_, i) => Of(i)).Where(r => r is not null).ToList();
            return ranks.Count > 0 ? ranks.Max() : null;
        }

        switch (node.OpType)
        {
            case "Constant":
                return node.TensorValue("value")?.Dims.Count;
            case "MatMul":
                return Of(0) is { } a and >= 2 && Of(1) is { } b and >= 2 ? Math.Max(a, b) : null;
            case "Gemm" or "Flatten":
                return 2;
            case "Gather":
                return Of(0) is { } data && Of(1) is { } indices ? data + indices - 1 : null;
            case "Unsqueeze":
                var axes = UnsqueezeAxes(graph, node);
                return axes is not null && Of(0) is { } inner ? inner + axes.Length : null;
            case "Reshape":
                return node.Input.Count > 1 && graph.GetInitializer(node.Input[1]) is { Dims.Count: 1 } shape ? (int)shape.Dims[0] : null;
            default:
                return null;
        }
    }

    /// <summary>An Unsqueeze's (or Squeeze's) axes: its constant second input from opset 13, its attribute before; null when not constant.</summary>
    internal static long[]? UnsqueezeAxes(OnnxGraph graph, NodeProto node) =>
        node.Input.Count > 1 ? (graph.GetInitializer(node.Input[1]) is { } axes ? Int64s(axes) : null) : node.Ints("axes");

    /// <summary>The values of a small embedded int64 or int32 constant, or null for other types and external data.</summary>
    public static long[]? Int64s(TensorProto tensor)
    {
        if (ExternalDataReference.IsExternal(tensor))
        {
            return null;
        }

        using var data = TensorData.FromEmbedded(tensor);
        return tensor.DataType switch
        {
            (int)TensorProto.Types.DataType.Int64 => data.As<long>().ToArray(),
            (int)TensorProto.Types.DataType.Int32 => data.As<int>().ToArray().Select(v => (long)v).ToArray(),
            _ => null,
        };
    }
}
