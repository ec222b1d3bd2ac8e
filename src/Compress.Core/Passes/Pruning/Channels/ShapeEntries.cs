using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;

namespace Compress.Core.Passes.Pruning.Channels;

/// <summary>Entry <see cref="Element"/> of the constant input <see cref="Input"/> of <see cref="Node"/> (values <see cref="Values"/>).</summary>
internal sealed record ShapeEntry(NodeProto Node, int Input, long[] Values, int Element)
{
    public long Value => Values[Element];
}

/// <summary>
/// Where an entry of a Reshape's target shape comes from (for <see cref="AttentionHeads"/>): a constant shape, or a
/// Concat of constants, Unsqueezed constant scalars and run-time sizes (Unsqueezed Gathers of a Shape, or one Slice of
/// a Shape) — and which entries a Slice of a Shape takes.
/// </summary>
internal static class ShapeEntries
{
    /// <summary>The entries [Start, End) a Slice with constant bounds (one axis, step 1) takes from a shape of <paramref name="rank"/> entries.</summary>
    public static (long Start, long End)? SliceRange(OnnxGraph graph, NodeProto slice, int rank)
    {
        static long Clamp(long i, int rank) => Math.Clamp(i < 0 ? i + rank : i, 0, rank);
        return SliceBounds(graph, slice) is var (start, end) ? (Clamp(start, rank), Clamp(end, rank)) : null;
    }

    /// <summary>The start and end, as written, of a Slice with constant bounds (one axis, step 1).</summary>
    public static (long Start, long End)? SliceBounds(OnnxGraph graph, NodeProto slice)
    {
        long[]? Constant(int input) => slice.Input.Count > input && slice.Input[input].Length > 0
            ? (graph.GetInitializer(slice.Input[input]) is { } c ? StaticShape.Int64s(c) : null)
            : [];
        if (slice.Input.Count < 3 || Constant(1) is not [var start] || Constant(2) is not [var end]
            || Constant(3) is not ([] or [0]) || Constant(4) is not ([] or [1]))
        {
            return null;
        }

        return (start, end);
    }

    /// <summary>Where entry <paramref name="index"/> of a Reshape's shape (of <paramref name="length"/> entries) comes from, and its value.</summary>
    public static ShapeEntry? Entry(OnnxGraph graph, NodeProto reshape, int index, int length, Dictionary<string, long?[]?>? sizes = null)
    {
        // Before opset 5 the shape is an attribute, not an input: not rewritten.
        if (reshape.Int("allowzero", 0) != 0 || reshape.Input.Count < 2)
        {
            return null;
        }

        var shape = reshape.Input[1];
        if (graph.GetInitializer(shape) is { } constant)
        {
            return StaticShape.Int64s(constant) is { } values && values.Length == length ? new ShapeEntry(reshape, 1, values, index) : null;
        }

        if (graph.GetProducer(shape) is not { OpType: "Concat" } concat || concat.Int("axis", 0) != 0)
        {
            return null;
        }

        // Each part's length; one run-time Slice of a Shape may have a length the others leave (HF: size()[:-1] + (H, D)).
        var parts = concat.Input.Select(i => Part(graph, i, sizes)).ToList();
        var unknown = parts.Count(p => p is null);
        if (unknown > 1 || (unknown == 1 && !parts.Select((p, i) => (p, i)).Where(x => x.p is null).All(x => IsShapeSlice(graph, concat.Input[x.i]))))
        {
            return null;
        }

        var rest = length - parts.Sum(p => p?.Length ?? 0);
        var before = 0;
        for (var i = 0; i < parts.Count; i++)
        {
            var (partLength, values) = parts[i] ?? (rest, null);
            if (partLength <= 0)
            {
                return null;
            }

            if (index < before + partLength)
            {
                return values is not null ? new ShapeEntry(concat, i, values, index - before) : null;
            }

            before += partLength;
        }

        return null;
    }

    /// <summary>
    /// The values of a small integer expression the graph fixes before it runs, or null: constants, Cast, Unsqueeze,
    /// Squeeze, Concat, Add/Sub/Mul/Div, and Gathers of a Shape whose sizes are known (<see cref="StaticShape.Of"/>),
    /// as exports compute a head's width (C / H of the input's width). <paramref name="leaf"/> may give a value first.
    /// </summary>
    public static long[]? Evaluate(OnnxGraph graph, string value, Dictionary<string, long?[]?>? sizes = null, Func<string, long[]?>? leaf = null, int depth = 0)
    {
        if (leaf?.Invoke(value) is { } given)
        {
            return given;
        }

        if (graph.GetInitializer(value) is { } constant)
        {
            return constant.Dims.Count <= 1 ? StaticShape.Int64s(constant) : null;
        }

        if (depth > 32 || graph.GetProducer(value) is not { } node || !string.IsNullOrEmpty(node.Domain) || node.Output[0] != value)
        {
            return null;
        }

        long[]? In(int i) => node.Input.Count > i && node.Input[i].Length > 0 ? Evaluate(graph, node.Input[i], sizes, leaf, depth + 1) : null;
        switch (node.OpType)
        {
            case "Constant":
                return node.TensorValue("value") is { Dims.Count: <= 1 } t ? StaticShape.Int64s(t) : null;
            case "Cast":
                return node.Int("to", 0) is (int)TensorProto.Types.DataType.Int64 or (int)TensorProto.Types.DataType.Int32 ? In(0) : null;
            case "Identity" or "Unsqueeze" or "Squeeze":
                return In(0);
            case "Concat":
                var parts = new List<long>();
                for (var i = 0; i < node.Input.Count; i++)
                {
                    if (In(i) is not { } part)
                    {
                        return null;
                    }

                    parts.AddRange(part);
                }

                return [.. parts];
            case "Add" or "Sub" or "Mul" or "Div":
                if (In(0) is not { } a || In(1) is not { } b || (a.Length != b.Length && a.Length != 1 && b.Length != 1))
                {
                    return null;
                }

                var length = Math.Max(a.Length, b.Length);
                var result = new long[length];
                for (var i = 0; i < length; i++)
                {
                    var (x, y) = (a[a.Length == 1 ? 0 : i], b[b.Length == 1 ? 0 : i]);
                    if (node.OpType == "Div" && y == 0)
                    {
                        return null;
                    }

                    result[i] = node.OpType switch { "Add" => x + y, "Sub" => x - y, "Mul" => x * y, _ => x / y };
                }

                return result;
            case "Shape" when node.Attribute.Count == 0:
                return StaticShape.Of(graph, node.Input[0], sizes) is { } all && all.All(d => d is not null) ? all.Select(d => d!.Value).ToArray() : null;
            case "Gather" when node.Int("axis", 0) == 0:
                if (In(1) is not { } indices)
                {
                    return null;
                }

                // A Gather of a Shape needs only the sizes it picks.
                long?[]? data = graph.GetProducer(node.Input[0]) is { OpType: "Shape", Attribute.Count: 0 } shape
                    ? StaticShape.Of(graph, shape.Input[0], sizes)
                    : In(0)?.Select(v => (long?)v).ToArray();
                if (data is null || indices.Any(i => i < -data.Length || i >= data.Length))
                {
                    return null;
                }

                var picked = indices.Select(i => data[i < 0 ? i + data.Length : i]).ToArray();
                return picked.All(v => v is not null) ? picked.Select(v => v!.Value).ToArray() : null;
            default:
                return null;
        }
    }

    /// <summary>Whether the value is a Slice of a Shape (run-time sizes).</summary>
    private static bool IsShapeSlice(OnnxGraph graph, string value) =>
        graph.GetProducer(value) is { OpType: "Slice" } slice && graph.GetProducer(slice.Input[0]) is { OpType: "Shape" };

    /// <summary>A piece of a concatenated shape: its length and, when constant, its values (a constant, a constant scalar Unsqueezed, or a size the graph fixes).</summary>
    private static (int Length, long[]? Values)? Part(OnnxGraph graph, string value, Dictionary<string, long?[]?>? sizes)
    {
        if (graph.GetInitializer(value) is { } constant)
        {
            return StaticShape.Int64s(constant) is { } values && constant.Dims.Count == 1 ? (values.Length, values) : null;
        }

        // Sizes fixed before the model runs (a head's width C / H from the input's declared width), one entry each.
        if (graph.GetProducer(value) is { OpType: "Unsqueeze" } && Evaluate(graph, value, sizes) is [var known])
        {
            return (1, [known]);
        }

        if (graph.GetProducer(value) is not { OpType: "Unsqueeze" } unsqueeze)
        {
            return null;
        }

        var scalar = unsqueeze.Input[0];
        if (graph.GetInitializer(scalar) is { Dims.Count: 0 } c)
        {
            return (1, StaticShape.Int64s(c));
        }

        // A dynamic size (Gather of a scalar index from a Shape, or any scalar: B·H), one entry long.
        if (graph.GetProducer(scalar) is { OpType: "Gather" } gather && graph.GetInitializer(gather.Input[1]) is { Dims.Count: 0 })
        {
            return (1, null);
        }

        var axes = StaticShape.UnsqueezeAxes(graph, unsqueeze);
        return axes is [_] && StaticShape.Of(graph, scalar, sizes) is { Length: 0 } ? (1, null) : null;
    }
}
