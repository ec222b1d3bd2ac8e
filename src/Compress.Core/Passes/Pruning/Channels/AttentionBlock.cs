using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;

namespace Compress.Core.Passes.Pruning.Channels;

/// <summary>
/// One head branch (q, k or v): its projection (MatMul or Gemm), bias Add, the Split or Slice taking its part of a fused
/// q/k/v projection (or null), split Reshape and the Transposes to the heads-first layout.
/// </summary>
internal sealed record AttentionBranch(NodeProto Projection, NodeProto? Bias, NodeProto? Chunk, NodeProto Split, List<NodeProto> Path);

/// <summary>The matched structure of one attention block, before any check of its shapes and readers.</summary>
internal sealed record AttentionBlock(AttentionBranch Q, AttentionBranch K, AttentionBranch V, NodeProto Scores, List<NodeProto> Masking, NodeProto Softmax,
    List<NodeProto> Probabilities, NodeProto Context, List<NodeProto> Back, NodeProto Merge, NodeProto Output)
{
    /// <summary>
    /// The block around <paramref name="softmax"/>, or null when it is not multi-head attention with constant projections:
    /// rank 4 ([B, T, H, D], heads an axis of their own) or rank 3 ([T, B·H, D], as nn.MultiheadAttention exports it).
    /// </summary>
    public static AttentionBlock? Match(OnnxGraph graph, NodeProto softmax)
    {
        // Backward from the Softmax: the scores' element-wise ops (scale, mask) down to the MatMul Q·Kᵀ.
        var masking = new List<NodeProto>();
        var value = softmax.Input[0];
        NodeProto? scores = null;
        while (graph.GetProducer(value) is { } node && masking.Count < 8)
        {
            if (node.OpType == "MatMul" && node.Input.All(i => graph.GetInitializer(i) is null))
            {
                scores = node;
                break;
            }

            if (node.OpType is not ("Add" or "Sub" or "Mul" or "Div") || !string.IsNullOrEmpty(node.Domain))
            {
                return null;
            }

            // The chain goes on through the input that holds the scores: the one not a constant whose producer leads to a MatMul.
            var next = node.Input.FirstOrDefault(i => graph.GetInitializer(i) is null && LeadsToScores(graph, i));
            if (next is null)
            {
                return null;
            }

            masking.Insert(0, node);
            value = next;
        }

        if (scores is null)
        {
            return null;
        }

        // Forward from the Softmax: Identity/Dropout, then the MatMul with V.
        var probabilities = new List<NodeProto>();
        var probs = softmax.Output[0];
        NodeProto? context = null;
        while (graph.GetConsumers(probs) is [var reader] && probabilities.Count < 4)
        {
            if (reader.OpType == "MatMul" && reader.Input[0] == probs)
            {
                context = reader;
                break;
            }

            if (reader.OpType is not ("Identity" or "Dropout"))
            {
                return null;
            }

            probabilities.Add(reader);
            probs = reader.Output[0];
        }

        if (context is null || Walk(graph, scores.Input[0]) is not { } q || Walk(graph, scores.Input[1]) is not { } k
            || Walk(graph, context.Input[1]) is not { } v)
        {
            return null;
        }

        // From the context: Transposes back to [B, T, H, D], the merge Reshape, the output projection.
        var back = new List<NodeProto>();
        var current = context.Output[0];
        while (Readers(graph, current) is [var reader] && reader.OpType == "Transpose" && back.Count < 4)
        {
            back.Add(reader);
            current = reader.Output[0];
        }

        if (Readers(graph, current) is not [var merge] || merge.OpType != "Reshape" || merge.Input[0] != current)
        {
            return null;
        }

        var output = graph.GetConsumers(merge.Output[0]).FirstOrDefault(n => (n.OpType == "MatMul" || (n.OpType == "Gemm" && n.Int("transA", 0) == 0))
            && string.IsNullOrEmpty(n.Domain) && n.Input[0] == merge.Output[0]);
        if (output is null || graph.GetInitializer(output.Input[1]) is not { Dims.Count: 2 })
        {
            return null;
        }

        return new AttentionBlock(q, k, v, scores, masking, softmax, probabilities, context, back, merge, output);
    }

    /// <summary>A value's readers other than Shape nodes (which the analysis checks on their own).</summary>
    private static List<NodeProto> Readers(OnnxGraph graph, string value) => graph.GetConsumers(value).Where(n => n.OpType != "Shape").ToList();

    /// <summary>Whether the value comes, through element-wise ops, from a MatMul of two non-constants (the scores, not a mask).</summary>
    private static bool LeadsToScores(OnnxGraph graph, string value)
    {
        for (var depth = 0; depth < 8 && graph.GetProducer(value) is { } node; depth++)
        {
            if (node.OpType == "MatMul")
            {
                return node.Input.All(i => graph.GetInitializer(i) is null);
            }

            if (node.OpType is not ("Add" or "Sub" or "Mul" or "Div"))
            {
                return false;
            }

            value = node.Input.FirstOrDefault(i => graph.GetInitializer(i) is null && graph.GetProducer(i)?.OpType is "MatMul" or "Add" or "Sub" or "Mul" or "Div") ?? "";
        }

        return false;
    }

    /// <summary>Backward from a MatMul input: Transposes and scalar scales down to a Reshape of (x·W + b).</summary>
    private static AttentionBranch? Walk(OnnxGraph graph, string value)
    {
        var path = new List<NodeProto>();
        while (graph.GetProducer(value) is { } node && path.Count < 6)
        {
            switch (node.OpType)
            {
                case "Transpose":
                    path.Insert(0, node);
                    value = node.Input[0];
                    continue;
                case "Mul" when node.Input.Count == 2 && graph.GetInitializer(node.Input[0]) is not null && graph.GetInitializer(node.Input[1]) is null:
                    path.Insert(0, node);
                    value = node.Input[1];
                    continue;
                case "Mul" or "Div" when node.Input.Count == 2 && graph.GetInitializer(node.Input[1]) is not null && graph.GetInitializer(node.Input[0]) is null:
                    path.Insert(0, node);
                    value = node.Input[0];
                    continue;
                case "Reshape":
                    var input = graph.GetProducer(node.Input[0]);
                    // A fused projection (x·W_qkv, GPT-2's c_attn, nn.MultiheadAttention's in_proj): its part from a Split or a Slice.
                    var chunk = input is { OpType: "Split" or "Slice", Domain: "" } ? input : null;
                    if (chunk is not null)
                    {
                        input = graph.GetProducer(chunk.Input[0]);
                    }

                    var bias = input is { OpType: "Add" } && input.Input.Count(i => graph.GetInitializer(i) is not null) == 1 ? input : null;
                    var projection = bias is null ? input : graph.GetProducer(bias.Input.First(i => graph.GetInitializer(i) is null));
                    if (projection is null || projection.OpType is not ("MatMul" or "Gemm") || ChannelGroups.Produced(graph, projection) is null)
                    {
                        return null;
                    }

                    return new AttentionBranch(projection, bias, chunk, node, path);
                default:
                    return null;
            }
        }

        return null;
    }
}
