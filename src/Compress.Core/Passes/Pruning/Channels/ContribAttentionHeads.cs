using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;

namespace Compress.Core.Passes.Pruning.Channels;

/// <summary>
/// The attention-head groups of ONNX Runtime's fused contrib ops (algorithms.md §14), as its transformer optimizer
/// writes BERT-like models. com.microsoft.Attention: input [B, S, C_in], weights [C_in, 3C] with q | k | v packed
/// along the last axis, bias [3C], <c>num_heads</c> H (and optionally <c>qkv_hidden_sizes</c>); head h is columns
/// [hD, (h+1)D) of each third of the weights and the bias. com.microsoft.MultiHeadAttention: query, key and value
/// [B, S, C] each projected by a MatMul with a constant weight (and bias Add), an optional packed bias [3C];
/// head h is columns [hD, (h+1)D) of each projection. In both, entry h of a constant per-head attention_bias goes,
/// rows [hD, (h+1)D) of the output projection (a MatMul reading the op's output [B, S, C]) go, and <c>num_heads</c>
/// is lowered. Past and present state, q and k of unequal widths (a heads-first key among them), or values something
/// else reads leave the block whole, with the reason.
/// </summary>
public static class ContribAttentionHeads
{
    private const string Domain = "com.microsoft";

    /// <summary>Whether the node is com.microsoft.Attention (the op that holds its q/k/v weights).</summary>
    public static bool Is(NodeProto node) => node.OpType == "Attention" && node.Domain == Domain;

    /// <summary>
    /// One group per Attention node, and per MultiHeadAttention node whose query, key and value come from three
    /// projections (otherwise those are groups of their own, which the op, an unknown reader, leaves whole), in graph order.
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

        var sizes = node.Ints("qkv_hidden_sizes") ?? [packed / 3, packed / 3, packed / 3];
        if (sizes is not [var width, _, _] || sizes.Any(s => s != width) || 3 * width != packed)
        {
            return $"the q, k and v widths of '{name}' ({string.Join(", ", sizes)}) are not three equal parts of its {packed} weight columns";
        }

        if (width % heads != 0)
        {
            return $"the width {width} of '{name}' is not a multiple of its {heads} heads";
        }

        var headSize = width / heads;
        for (var part = 0; part < 3; part++)
        {
            group.Slices.Add(new ChannelSlice(weights.Name, node, 1, part * width, headSize, SliceRole.Producer));
        }

        if (node.Ints("qkv_hidden_sizes") is not null)
        {
            group.AttributeFixes.Add(new AttributeFix(node, "qkv_hidden_sizes", [headSize, headSize, headSize]));
        }

        return PackedBias(graph, node, 2, [width, width, width], [headSize, headSize, headSize], group) ?? Common(graph, node, heads, width, headSize, group);
    }

    /// <summary>
    /// The projections of a MultiHeadAttention's query, key and value (x·W with a constant weight, + a constant b), three
    /// different ones; null where they are not.
    /// </summary>
    private static List<(NodeProto Projection, NodeProto? Bias, long Width)>? Branches(OnnxGraph graph, NodeProto node)
    {
        var branches = new List<(NodeProto Projection, NodeProto? Bias, long Width)>();
        for (var i = 0; i < 3; i++)
        {
            if (Input(node, i) is not { } value || node.Input.Count(n => n == value) != 1)
            {
                return null;
            }

            var add = graph.GetProducer(value) is { OpType: "Add", Domain: "" } a && a.Input.Count(n => graph.GetInitializer(n) is not null) == 1 ? a : null;
            var projection = add is null ? graph.GetProducer(value) : graph.GetProducer(add.Input.First(n => graph.GetInitializer(n) is null));
            // A Gemm writes [B·S, C]: MultiHeadAttention's query and key are [B, S, C] (or packed, which is refused).
            if (projection is not { OpType: "MatMul" } || ChannelGroups.Produced(graph, projection) is not { } produced)
            {
                return null;
            }

            branches.Add((projection, add, produced.Channels));
        }

        return branches.Select(b => b.Projection).Distinct(ReferenceEqualityComparer.Instance).Count() == 3 ? branches : null;
    }

    /// <summary>com.microsoft.MultiHeadAttention: its three projections' slices, then the packed bias and <see cref="Common"/>; returns why it cannot be cut, or null.</summary>
    private static string? Separate(OnnxGraph graph, NodeProto node, long heads, ChannelGroup group, List<(NodeProto Projection, NodeProto? Bias, long Width)> branches)
    {
        var name = OnnxGraph.Describe(node);
        if (Enumerable.Range(6, 4).Any(i => Input(node, i) is not null) || Enumerable.Range(1, 3).Any(i => Output(node, i) is not null))
        {
            return $"'{name}' carries past and present key/value state, whose head count the engine does not rewrite";
        }

        // The layouts need no rank: with key and value given, the query is [B, S, C]; a key or value in the heads-first
        // layout [B, H, T, D] of past state would end in D = C/H features, which the widths below refuse (H > 1).
        var (width, valueWidth) = (branches[0].Width, branches[2].Width);
        if (heads < 2)
        {
            return $"'{name}' has a single head";
        }

        if (branches[1].Width != width || width % heads != 0 || valueWidth % heads != 0)
        {
            return $"the q, k and v widths of '{name}' ({string.Join(", ", branches.Select(b => b.Width))}) do not split into {heads} heads of one size for q and k";
        }

        long[] headSizes = [width / heads, width / heads, valueWidth / heads];
        for (var i = 0; i < 3; i++)
        {
            var (projection, add, columns) = branches[i];
            var axis = ChannelGroups.Produced(graph, projection)!.Value.Axis;
            group.Slices.Add(new ChannelSlice(projection.Input[1], projection, axis, 0, headSizes[i], SliceRole.Producer));
            var value = projection.Output[0];
            group.Values.Add(value);
            if (add is not null)
            {
                var bias = graph.GetInitializer(add.Input.First(n => graph.GetInitializer(n) is not null))!;
                if (bias.Dims.Count == 0 || bias.Dims[^1] != columns || bias.Dims.Take(bias.Dims.Count - 1).Any(d => d != 1))
                {
                    return $"the bias of '{OnnxGraph.Describe(add)}' is not one value per feature";
                }

                group.Slices.Add(new ChannelSlice(bias.Name, add, bias.Dims.Count - 1, 0, headSizes[i], SliceRole.Parameter));
                if (ReadOnlyBy(graph, value, add) is { } other)
                {
                    return other;
                }

                value = add.Output[0];
                group.Values.Add(value);
            }

            if (ReadOnlyBy(graph, value, node) is { } reader)
            {
                return reader;
            }
        }

        return PackedBias(graph, node, 3, [width, width, valueWidth], headSizes, group) ?? Common(graph, node, heads, valueWidth, headSizes[2], group);
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

        if (graph.GetConsumers(output) is not [var projection] || projection.OpType != "MatMul" || !string.IsNullOrEmpty(projection.Domain)
            || projection.Input[0] != output || projection.Input[1] == output)
        {
            var reader = graph.GetConsumers(output).FirstOrDefault(r => r.OpType != "MatMul" || r.Input[0] != output) ?? graph.GetConsumers(output).FirstOrDefault();
            return reader is null
                ? $"nothing reads the output of '{name}'"
                : $"'{OnnxGraph.Describe(reader)}' ({reader.OpType}) reads the output of '{name}' besides its output projection";
        }

        if (graph.GetInitializer(projection.Input[1]) is not { Dims: [var rows, _] } o || o.DataType != (int)TensorProto.Types.DataType.Float || rows != width)
        {
            return $"'{OnnxGraph.Describe(projection)}' does not read the {width} features of '{name}' with a constant float matrix";
        }

        group.Slices.Add(new ChannelSlice(o.Name, projection, 0, 0, headSize, SliceRole.Consumer));
        group.AttributeFixes.Add(new AttributeFix(node, "num_heads", [1]));
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
