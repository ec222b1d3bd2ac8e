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

    /// <summary>The value's sizes (null where not known), or null when even its rank is not.</summary>
    public static long?[]? Of(OnnxGraph graph, string value, int depth = 0)
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

        if (depth > 32 || !string.IsNullOrEmpty(node.Domain))
        {
            return null;
        }

        if (SameShape.Contains(node.OpType))
        {
            return Of(graph, node.Input[0], depth + 1);
        }

        if (node.OpType == "Unsqueeze")
        {
            var axes = node.Input.Count > 1 ? (graph.GetInitializer(node.Input[1]) is { } a ? Int64s(a) : null) : node.Ints("axes");
            if (axes is null || Of(graph, node.Input[0], depth + 1) is not { } inner)
            {
                return null;
            }

            var rank = inner.Length + axes.Length;
            var normal = axes.Select(x => x < 0 ? x + rank : x).ToHashSet();
            var dims = new long?[rank];
            var next = 0;
            for (var i = 0; i < rank; i++)
            {
                dims[i] = normal.Contains(i) ? 1 : inner[next++];
            }

            return dims;
        }

        if (Broadcast.Contains(node.OpType))
        {
            var shapes = new List<long?[]>();
            foreach (var input in node.Input)
            {
                if (Of(graph, input, depth + 1) is not { } shape)
                {
                    return null;
                }

                shapes.Add(shape);
            }

            var rank = shapes.Max(s => s.Length);
            var result = new long?[rank];
            for (var i = 1; i <= rank; i++)
            {
                // From the end: 1 where every input has 1 or lacks the axis, a number where one input has it, else unknown.
                var sizes = shapes.Where(s => s.Length >= i).Select(s => s[^i]).ToList();
                result[^i] = sizes.All(s => s == 1) ? 1 : sizes.FirstOrDefault(s => s is > 1);
            }

            return result;
        }

        return null;
    }

    /// <summary>Ops whose first output has the rank of their first input.</summary>
    private static readonly HashSet<string> SameRank = ["LayerNormalization", "Softmax", "LogSoftmax", "Dropout", "Transpose", "Slice", "Gelu", "Clip",
        "BatchNormalization", "InstanceNormalization", "LeakyRelu", "Elu", "Softplus", "HardSigmoid", "Celu", "Selu"];

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
                return node.Attribute.FirstOrDefault(a => a.Name == "value")?.T?.Dims.Count;
            case "MatMul":
                return Of(0) is { } a and >= 2 && Of(1) is { } b and >= 2 ? Math.Max(a, b) : null;
            case "Gemm" or "Flatten":
                return 2;
            case "Gather":
                return Of(0) is { } data && Of(1) is { } indices ? data + indices - 1 : null;
            case "Unsqueeze":
                var axes = node.Input.Count > 1 ? (graph.GetInitializer(node.Input[1]) is { } t ? Int64s(t) : null) : node.Ints("axes");
                return axes is not null && Of(0) is { } inner ? inner + axes.Length : null;
            case "Reshape":
                return node.Input.Count > 1 && graph.GetInitializer(node.Input[1]) is { Dims.Count: 1 } shape ? (int)shape.Dims[0] : null;
            default:
                return null;
        }
    }

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
