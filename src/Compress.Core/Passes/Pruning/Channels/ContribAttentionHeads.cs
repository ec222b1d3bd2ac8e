using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;

namespace Compress.Core.Passes.Pruning.Channels;

/// <summary>
/// The attention-head groups of ONNX Runtime's fused contrib ops (algorithms.md §14), as its transformer optimizer
/// writes BERT-like models. com.microsoft.Attention: input [B, S, C_in], weights [C_in, C_q + C_k + C_v] with q | k | v
/// packed along the last axis (C_q = C_k; <c>qkv_hidden_sizes</c> gives them, else three equal parts), bias of the same
/// width, <c>num_heads</c> H; head h is columns [hD, (h+1)D) of q and k (D = C_q/H) and [hD_v, (h+1)D_v) of v
/// (D_v = C_v/H), in the weights and the bias. com.microsoft.MultiHeadAttention: query, key and value [B, S, C] each
/// projected by a MatMul with a constant weight (and bias Add), an optional packed bias [C_q + C_k + C_v]; or packed
/// q/k/v, the query [B, S, H, 3, D] a Reshape of one projection [B, S, 3C] (key and value absent), or packed k/v, the
/// key [B, S, H, 2, D] a Reshape of one projection (value absent): head h is columns [hD, (h+1)D) of a separate
/// projection, [3hD, 3(h+1)D) or [2hD, 2(h+1)D) of a packed one, whose Reshape's H is lowered. In all, entry h of a
/// constant per-head attention_bias goes, rows [hD_v, (h+1)D_v) of the output projection (a MatMul reading the op's
/// output [B, S, C_v], or a Gemm or MatMul reading it through a Reshape to rows [B·S, C_v]) go, and <c>num_heads</c>
/// is lowered. Past and present state, q and k of unequal widths (a heads-first key among them), or values something
/// else reads leave the block whole, with the reason.
/// </summary>
public static class ContribAttentionHeads
{
    private const string Domain = "com.microsoft";

    /// <summary>Whether the node is com.microsoft.Attention (the op that holds its q/k/v weights).</summary>
    public static bool Is(NodeProto node) => node.OpType == "Attention" && node.Domain == Domain;

    /// <summary>
    /// One group per Attention node, and per MultiHeadAttention node whose query, key and value come from projections
    /// (three, or a packed one, or the query's and a packed key/value one; otherwise those are groups of their own, which
    /// the op, an unknown reader, leaves whole), in graph order.
    /// </summary>
    public static IEnumerable<ChannelGroup> Find(OnnxGraph graph, IReadOnlyList<NodeProto> order)
    {
        foreach (var node in order.Where(n => n.Domain == Domain && n.OpType is "Attention" or "MultiHeadAttention"))
        {
            var heads = node.Int("num_heads", 0);
            var branches = node.OpType == "Attention" ? null : Branches(graph, node);
            if (node.OpType != "Attention" && branches is null)
            {
                continue;
            }

            var producers = branches?.Select(b => b.Projection).OrderBy(p => IndexOf(order, p)).ToList() ?? [node];
            var group = new ChannelGroup(producers[0], Math.Max(heads, 1)) { Heads = true };
            group.Producers.AddRange(producers);
            var why = heads < 1 ? $"'{OnnxGraph.Describe(node)}' has no num_heads"
                : branches is null ? Packed(graph, node, heads, group) : Separate(graph, node, heads, group, branches);
            group.Refusal = why ?? group.SliceConflict(graph);
            yield return group;
        }
    }

    /// <summary>com.microsoft.Attention: the packed weights and bias, then <see cref="Common"/>; returns why it cannot be cut, or null.</summary>
    private static string? Packed(OnnxGraph graph, NodeProto node, long heads, ChannelGroup group)
    {
        var name = OnnxGraph.Describe(node);
        if (graph.GetInitializer(node.Input[1]) is not { Dims: [_, var packed] } weights || weights.DataType != (int)TensorProto.Types.DataType.Float)
        {
            return $"the weights of '{name}' are not a constant float matrix";
        }

        if (Input(node, 4) is not null || Output(node, 1) is not null || node.Int("past_present_share_buffer", 0) != 0)
        {
            return $"'{name}' carries past and present key/value state, whose head count the engine does not rewrite";
        }

        // q and k share a width (their product is the scores); v may have its own, as the output does.
        var sizes = node.Ints("qkv_hidden_sizes") ?? [packed / 3, packed / 3, packed / 3];
        if (sizes is not [var width, var keyWidth, var valueWidth] || keyWidth != width || sizes.Any(s => s <= 0) || sizes.Sum() != packed)
        {
            return $"the q, k and v widths of '{name}' ({string.Join(", ", sizes)}) are not q and k of one width and v, together its {packed} weight columns";
        }

        if (width % heads != 0 || valueWidth % heads != 0)
        {
            return $"the q/k width {width} and v width {valueWidth} of '{name}' are not multiples of its {heads} heads";
        }

        long[] widths = [width, width, valueWidth];
        long[] headSizes = [width / heads, width / heads, valueWidth / heads];
        for (long part = 0, offset = 0; part < 3; offset += widths[part], part++)
        {
            group.Slices.Add(new ChannelSlice(weights.Name, node, 1, offset, headSizes[part], SliceRole.Producer));
        }

        if (node.Ints("qkv_hidden_sizes") is not null)
        {
            group.AttributeFixes.Add(new AttributeFix(node, "qkv_hidden_sizes", headSizes));
        }

        return PackedBias(graph, node, 2, widths, headSizes, group) ?? Common(graph, node, heads, valueWidth, headSizes[2], group);
    }

    /// <summary>
    /// One projection feeding a MultiHeadAttention input: x·W with a constant weight (+ a constant b), and for a packed
    /// input the Reshape to [B, S, H, <see cref="Parts"/>, D]; <see cref="Columns"/> is W's output features.
    /// </summary>
    private sealed record Branch(NodeProto Projection, NodeProto? Bias, NodeProto? Reshape, int Parts, long Columns);

    /// <summary>
    /// The projections of a MultiHeadAttention's inputs, different ones: query, key and value; a packed q/k/v query (key
    /// and value absent); or the query and a packed k/v key (value absent). Null where they are not.
    /// </summary>
    private static List<Branch>? Branches(OnnxGraph graph, NodeProto node)
    {
        (int Input, int Parts)[] inputs = (Input(node, 1), Input(node, 2)) switch
        {
            (null, null) => [(0, 3)],
            (not null, null) => [(0, 1), (1, 2)],
            _ => [(0, 1), (1, 1), (2, 1)],
        };

        var branches = new List<Branch>();
        foreach (var (input, parts) in inputs)
        {
            if (Projected(graph, node, input, parts) is not { } branch)
            {
                return null;
            }

            branches.Add(branch);
        }

        return branches.Select(b => b.Projection).Distinct(ReferenceEqualityComparer.Instance).Count() == branches.Count ? branches : null;
    }

    /// <summary>The projection behind input <paramref name="input"/> of <paramref name="node"/> (through a Reshape when <paramref name="parts"/> > 1), or null.</summary>
    private static Branch? Projected(OnnxGraph graph, NodeProto node, int input, int parts)
    {
        if (Input(node, input) is not { } value || node.Input.Count(n => n == value) != 1)
        {
            return null;
        }

        NodeProto? reshape = null;
        if (parts > 1)
        {
            if (graph.GetProducer(value) is not { OpType: "Reshape", Domain: "" } packed)
            {
                return null;
            }

            reshape = packed;
            value = packed.Input[0];
        }

        var add = graph.GetProducer(value) is { OpType: "Add", Domain: "" } a && a.Input.Count(n => graph.GetInitializer(n) is not null) == 1 ? a : null;
        var projection = add is null ? graph.GetProducer(value) : graph.GetProducer(add.Input.First(n => graph.GetInitializer(n) is null));
        // A Gemm writes [B·S, C]: MultiHeadAttention's query and key are [B, S, C] (or a Reshape of it).
        if (projection is not { OpType: "MatMul" } || ChannelGroups.Produced(graph, projection) is not { } produced)
        {
            return null;
        }

        return new Branch(projection, add, reshape, parts, produced.Channels);
    }

    /// <summary>com.microsoft.MultiHeadAttention: its projections' slices, then the packed bias and <see cref="Common"/>; returns why it cannot be cut, or null.</summary>
    private static string? Separate(OnnxGraph graph, NodeProto node, long heads, ChannelGroup group, List<Branch> branches)
    {
        var name = OnnxGraph.Describe(node);
        if (Enumerable.Range(6, 4).Any(i => Input(node, i) is not null) || Enumerable.Range(1, 3).Any(i => Output(node, i) is not null))
        {
            return $"'{name}' carries past and present key/value state, whose head count the engine does not rewrite";
        }

        if (heads < 2)
        {
            return $"'{name}' has a single head";
        }

        // The layouts need no rank: with key and value given, the query is [B, S, C]; a key or value in the heads-first
        // layout [B, H, T, D] of past state would end in D = C/H features, which the widths below refuse (H > 1).
        // Packed, q, k and v have one head size D (ONNX Runtime's spec), each projection's columns H·parts·D.
        if (branches.Any(b => b.Columns % b.Parts != 0))
        {
            return $"the packed projection of '{name}' does not split into equal q, k and v parts";
        }

        long[] widths = branches.Count switch
        {
            1 => [branches[0].Columns / 3, branches[0].Columns / 3, branches[0].Columns / 3],
            2 => [branches[0].Columns, branches[1].Columns / 2, branches[1].Columns / 2],
            _ => [branches[0].Columns, branches[1].Columns, branches[2].Columns],
        };

        var (width, valueWidth) = (widths[0], widths[2]);
        if (widths[1] != width || width % heads != 0 || valueWidth % heads != 0)
        {
            return $"the q, k and v widths of '{name}' ({string.Join(", ", widths)}) do not split into {heads} heads of one size for q and k";
        }

        long[] headSizes = [width / heads, width / heads, valueWidth / heads];
        foreach (var (projection, add, reshape, parts, columns) in branches)
        {
            // Head h is the contiguous columns [h·parts·D, (h+1)·parts·D): D of its own q, k or v, or its packed D of each.
            var stride = columns / heads;
            var axis = ChannelGroups.Produced(graph, projection)!.Value.Axis;
            group.Slices.Add(new ChannelSlice(projection.Input[1], projection, axis, 0, stride, SliceRole.Producer));
            var value = projection.Output[0];
            group.Values.Add(value);
            if (add is not null)
            {
                var bias = graph.GetInitializer(add.Input.First(n => graph.GetInitializer(n) is not null))!;
                if (bias.Dims.Count == 0 || bias.Dims[^1] != columns || bias.Dims.Take(bias.Dims.Count - 1).Any(d => d != 1))
                {
                    return $"the bias of '{OnnxGraph.Describe(add)}' is not one value per feature";
                }

                group.Slices.Add(new ChannelSlice(bias.Name, add, bias.Dims.Count - 1, 0, stride, SliceRole.Parameter));
                if (ReadOnlyBy(graph, value, add) is { } other)
                {
                    return other;
                }

                value = add.Output[0];
                group.Values.Add(value);
            }

            if (reshape is not null)
            {
                if ((ReadOnlyBy(graph, value, reshape) ?? PackedShape(graph, reshape, heads, parts, stride / parts, group)) is { } why)
                {
                    return why;
                }

                value = reshape.Output[0];
                group.Values.Add(value);
            }

            if (ReadOnlyBy(graph, value, node) is { } reader)
            {
                return reader;
            }
        }

        // ONNX Runtime takes no bias input with packed k/v (it refuses one); with packed q/k/v it is [C | C | C] as unpacked.
        if (branches.Count == 2 && Input(node, 3) is not null)
        {
            return $"'{name}' has a bias with a packed key and value, which ONNX Runtime does not allow";
        }

        return PackedBias(graph, node, 3, widths, headSizes, group) ?? Common(graph, node, heads, valueWidth, headSizes[2], group);
    }

    /// <summary>
    /// A packed input's Reshape to [B, S, H, parts, D] with a constant shape: its H (or -1, inferred) is lowered with the
    /// heads in a constant of its own; returns why not, or null.
    /// </summary>
    private static string? PackedShape(OnnxGraph graph, NodeProto reshape, long heads, int parts, long headSize, ChannelGroup group)
    {
        if (ShapeEntries.Entry(graph, reshape, 2, 5) is not { } entry || !ReferenceEquals(entry.Node, reshape)
            || entry.Values[3] != parts || entry.Values[4] != headSize || entry.Value is not (-1 or > 0) || (entry.Value > 0 && entry.Value != heads))
        {
            return $"'{OnnxGraph.Describe(reshape)}' does not reshape to a constant [B, S, {heads}, {parts}, {headSize}]";
        }

        if (entry.Value > 0)
        {
            group.ShapeFixes.Add(new ShapeFix(reshape, entry.Input, entry.Values, entry.Element, 1));
        }

        return null;
    }

    /// <summary>A bias [C_q + C_k + C_v] (input <paramref name="input"/>): three slices, one per part; or none.</summary>
    private static string? PackedBias(OnnxGraph graph, NodeProto node, int input, long[] widths, long[] headSizes, ChannelGroup group)
    {
        if (Input(node, input) is not { } bias)
        {
            return null;
        }

        if (graph.GetInitializer(bias) is not { Dims: [var n] } || n != widths.Sum())
        {
            return $"the bias of '{OnnxGraph.Describe(node)}' is not a constant with one value per q, k and v feature";
        }

        for (long part = 0, offset = 0; part < 3; offset += widths[part], part++)
        {
            group.Slices.Add(new ChannelSlice(bias, node, 0, offset, headSizes[part], SliceRole.Parameter));
        }

        return null;
    }

    /// <summary>
    /// What both ops share: the attention_bias (input 5) and the output [B, S, C] read by the output projection alone
    /// (its rows cut), and <c>num_heads</c> lowered.
    /// </summary>
    private static string? Common(OnnxGraph graph, NodeProto node, long heads, long width, long headSize, ChannelGroup group)
    {
        var name = OnnxGraph.Describe(node);
        // attention_bias [B or 1, H or 1, S, T], added to the scores: a constant one per head is sliced; else it must broadcast.
        if (Input(node, 5) is { } scoresBias)
        {
            var constant = graph.GetInitializer(scoresBias);
            var dims = constant is null ? StaticShape.Of(graph, scoresBias) : constant.Dims.Select(d => (long?)d).ToArray();
            if (dims is not { Length: 4 } || (dims[1] != 1 && (dims[1] != heads || constant is null)))
            {
                return $"the attention_bias '{scoresBias}' of '{name}' may hold one value per head";
            }

            if (dims[1] == heads && heads > 1)
            {
                group.Slices.Add(new ChannelSlice(scoresBias, node, 1, 0, 1, SliceRole.Parameter));
            }
        }

        var output = node.Output[0];
        group.Values.Add(output);
        if (graph.IsGraphOutput(output))
        {
            return $"its heads reach the graph output '{output}'";
        }

        // The output projection reads [B, S, C] (a MatMul), or rows [B·S, C] of a Reshape (a Gemm, or a MatMul).
        var value = output;
        if (graph.GetConsumers(output) is [{ OpType: "Reshape", Domain: "" } rows] && rows.Input[0] == output)
        {
            if (Rows(graph, rows, width, headSize, group) is { } why)
            {
                return why;
            }

            value = rows.Output[0];
            group.Values.Add(value);
            if (graph.IsGraphOutput(value))
            {
                return $"its heads reach the graph output '{value}'";
            }
        }

        if (graph.GetConsumers(value) is not [var projection] || projection.OpType is not ("MatMul" or "Gemm") || !string.IsNullOrEmpty(projection.Domain)
            || projection.Input[0] != value || projection.Input[1] == value || (projection.OpType == "Gemm" && (value == output || projection.Int("transA", 0) != 0)))
        {
            var reader = graph.GetConsumers(value).FirstOrDefault(r => r.OpType != "MatMul" || r.Input[0] != value) ?? graph.GetConsumers(value).FirstOrDefault();
            return reader is null
                ? $"nothing reads the output of '{name}'"
                : $"'{OnnxGraph.Describe(reader)}' ({reader.OpType}) reads the output of '{name}' besides its output projection";
        }

        if (!WeightSelection.IsPlainMatMul(projection))
        {
            return ChannelGroups.ScaledGemmRefusal(projection);
        }

        // Its weight's input features: rows of a MatMul's or a Gemm's B, columns of a Gemm's B with transB.
        var axis = projection.OpType == "Gemm" && projection.Int("transB", 0) == 1 ? 1 : 0;
        if (graph.GetInitializer(projection.Input[1]) is not { Dims.Count: 2 } o || o.DataType != (int)TensorProto.Types.DataType.Float || o.Dims[axis] != width)
        {
            return $"'{OnnxGraph.Describe(projection)}' does not read the {width} features of '{name}' with a constant float matrix";
        }

        group.Slices.Add(new ChannelSlice(o.Name, projection, axis, 0, headSize, SliceRole.Consumer));
        group.AttributeFixes.Add(new AttributeFix(node, "num_heads", [1]));
        return null;
    }

    /// <summary>
    /// The Reshape of the op's output [B, S, C] to rows [B·S, C] with a constant shape: its C (or -1 after a constant
    /// row count) is lowered with the heads in a constant of its own; returns why not, or null.
    /// </summary>
    private static string? Rows(OnnxGraph graph, NodeProto reshape, long width, long headSize, ChannelGroup group)
    {
        if (ShapeEntries.Entry(graph, reshape, 1, 2) is not { } entry || !ReferenceEquals(entry.Node, reshape)
            || !(entry.Value == width || (entry.Value == -1 && entry.Values[0] > 0)))
        {
            return $"'{OnnxGraph.Describe(reshape)}' does not reshape the output to a constant [rows, {width}]";
        }

        if (entry.Value > 0)
        {
            group.ShapeFixes.Add(new ShapeFix(reshape, entry.Input, entry.Values, entry.Element, headSize));
        }

        return null;
    }

    /// <summary>Null when <paramref name="value"/> (heads on its last axis) is read by <paramref name="reader"/> alone; else why not.</summary>
    private static string? ReadOnlyBy(OnnxGraph graph, string value, NodeProto reader)
    {
        if (graph.IsGraphOutput(value))
        {
            return $"its heads reach the graph output '{value}'";
        }

        return graph.GetConsumers(value).FirstOrDefault(r => !ReferenceEquals(r, reader)) is { } other
            ? $"'{OnnxGraph.Describe(other)}' ({other.OpType}) reads '{value}'"
            : null;
    }

    private static string? Input(NodeProto node, int i) => i < node.Input.Count && node.Input[i].Length > 0 ? node.Input[i] : null;

    private static string? Output(NodeProto node, int i) => i < node.Output.Count && node.Output[i].Length > 0 ? node.Output[i] : null;

    private static int IndexOf(IReadOnlyList<NodeProto> order, NodeProto node)
    {
        for (var i = 0; i < order.Count; i++)
        {
            if (ReferenceEquals(order[i], node))
            {
                return i;
            }
        }

        return -1;
    }
}
