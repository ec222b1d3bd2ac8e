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
    public static ShapeEntry? Entry(OnnxGraph graph, NodeProto reshape, int index, int length)
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
        var parts = concat.Input.Select(i => Part(graph, i)).ToList();
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

    /// <summary>Whether the value is a Slice of a Shape (run-time sizes).</summary>
    private static bool IsShapeSlice(OnnxGraph graph, string value) =>
        graph.GetProducer(value) is { OpType: "Slice" } slice && graph.GetProducer(slice.Input[0]) is { OpType: "Shape" };

    /// <summary>A piece of a concatenated shape: its length and, when constant, its values (a constant, or a constant scalar Unsqueezed).</summary>
    private static (int Length, long[]? Values)? Part(OnnxGraph graph, string value)
    {
        if (graph.GetInitializer(value) is { } constant)
        {
            return StaticShape.Int64s(constant) is { } values && constant.Dims.Count == 1 ? (values.Length, values) : null;
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

        // A dynamic size (Gather of a scalar index from a Shape), one entry long.
        return graph.GetProducer(scalar) is { OpType: "Gather" } gather && graph.GetInitializer(gather.Input[1]) is { Dims.Count: 0 } ? (1, null) : null;
    }
}
