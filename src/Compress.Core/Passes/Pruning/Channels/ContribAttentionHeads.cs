using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;

namespace Compress.Core.Passes.Pruning.Channels;

/// <summary>
/// The attention-head groups of ONNX Runtime's fused contrib op com.microsoft.Attention (algorithms.md §14), as its
/// transformer optimizer writes BERT-like models: input [B, S, C_in], weights [C_in, 3C] with q | k | v packed along the
/// last axis, bias [3C], <c>num_heads</c> H (and optionally <c>qkv_hidden_sizes</c>), output [B, S, C] read by the
/// output projection. Head h is columns [hD, (h+1)D) of each third of the weights and the bias, entry h of a constant
/// per-head attention_bias, and rows [hD, (h+1)D) of the output projection's weight; removing it lowers the two
/// attributes. Past and present state, q, k and v of unequal widths, or an output something else reads leave the block
/// whole, with the reason.
/// </summary>
public static class ContribAttentionHeads
{
    private const string Domain = "com.microsoft";

    /// <summary>Whether the node is com.microsoft.Attention.</summary>
    public static bool Is(NodeProto node) => node.OpType == "Attention" && node.Domain == Domain;

    /// <summary>One group per Attention node, in graph order; its one producer is the node.</summary>
    public static IEnumerable<ChannelGroup> Find(OnnxGraph graph, IReadOnlyList<NodeProto> order) => order.Where(Is).Select(node =>
    {
        var heads = node.Int("num_heads", 0);
        var group = new ChannelGroup(node, Math.Max(heads, 1)) { Heads = true };
        group.Producers.Add(node);
        group.Refusal = Analyse(graph, node, heads, group) ?? group.SliceConflict(graph);
        return group;
    });

    /// <summary>Fills the group's slices, attribute fixes and values; returns why it cannot be cut, or null.</summary>
    private static string? Analyse(OnnxGraph graph, NodeProto node, long heads, ChannelGroup group)
    {
        string? Input(int i) => i < node.Input.Count && node.Input[i].Length > 0 ? node.Input[i] : null;
        var name = OnnxGraph.Describe(node);
        if (heads < 1)
        {
            return $"'{name}' has no num_heads";
        }

        if (graph.GetInitializer(node.Input[1]) is not { Dims: [_, var packed] } weights || weights.DataType != (int)TensorProto.Types.DataType.Float)
        {
            return $"the weights of '{name}' are not a constant float matrix";
        }

        if (Input(4) is not null || (node.Output.Count > 1 && node.Output[1].Length > 0) || node.Int("past_present_share_buffer", 0) != 0)
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

        if (Input(2) is { } biasName)
        {
            if (graph.GetInitializer(biasName) is not { Dims: [var n] } || n != packed)
            {
                return $"the bias of '{name}' is not a constant with one value per weight column";
            }

            for (var part = 0; part < 3; part++)
            {
                group.Slices.Add(new ChannelSlice(biasName, node, 0, part * width, headSize, SliceRole.Parameter));
            }
        }

        // attention_bias [B or 1, H or 1, S, T], added to the scores: a constant one per head is sliced; else it must broadcast.
        if (Input(5) is { } scoresBias)
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

        // The output [B, S, C] (heads on the last axis) goes to the output projection alone: its rows are cut.
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
        if (node.Ints("qkv_hidden_sizes") is not null)
        {
            group.AttributeFixes.Add(new AttributeFix(node, "qkv_hidden_sizes", [headSize, headSize, headSize]));
        }

        return null;
    }
}
