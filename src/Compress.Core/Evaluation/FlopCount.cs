using Compress.Core.Calibration;
using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;

namespace Compress.Core.Evaluation;

/// <summary>
/// Multiply-adds of a model's Conv, Gemm and MatMul nodes for one sample (the ops that dominate a CNN or an MLP;
/// element-wise ops are not counted): each node's output size, read from one ONNX Runtime run on the first sample,
/// times the inputs each output element sums over (Conv: C_in/group·kh·kw; Gemm/MatMul: the inner dimension); a
/// ConvTranspose as its input size times the outputs each input element reaches, C_out/group·kh·kw.
/// QDQ nodes around a quantized op do not change its count, and quantized operators count as their float op:
/// MatMulNBits, DynamicQuantizeMatMul (both written by the engine), MatMulInteger, QLinearMatMul as MatMul; ConvInteger,
/// QLinearConv as Conv. ONNX Runtime's fused com.microsoft.Attention counts as the MatMuls it stands for: the packed q|k|v
/// projection, Q·Kᵀ and the probabilities times V; com.microsoft.MultiHeadAttention as its Q·Kᵀ and P·V. Other fused
/// or quantized forms (QGemm, FusedConv, FusedMatMul, MatMulIntegerToFloat) are not counted.
/// </summary>
public static class FlopCount
{
    /// <summary>The counted operators: standard, and the quantized forms of com.microsoft.</summary>
    private static readonly HashSet<string> Counted = ["Conv", "ConvTranspose", "Gemm", "MatMul", "MatMulNBits", "DynamicQuantizeMatMul", "MatMulInteger", "QLinearMatMul", "ConvInteger", "QLinearConv", "Attention", "MultiHeadAttention"];

    /// <summary>
    /// A node whose multiply-adds are counted, in the default domain or ONNX Runtime's; ONNX's own Attention (opset 23,
    /// separate q, k, v) is not the contrib op and is not counted.
    /// </summary>
    private static bool IsCounted(NodeProto n) =>
        Counted.Contains(n.OpType) && (string.IsNullOrEmpty(n.Domain) ? n.OpType != "Attention" : n.Domain == "com.microsoft");

    /// <summary>What the count depends on besides the data: the counted nodes, their inputs and the shapes of their weights.</summary>
    public static string Signature(OnnxModel model)
    {
        var graph = model.Graph;
        return string.Join(";", graph.Nodes.Where(IsCounted).Select(n =>
            $"{n.OpType}({string.Join(",", n.Input.Select(i => graph.GetInitializer(i) is { } w ? "[" + string.Join("x", w.Dims) + "]" : i))})"));
    }

    public static long MultiplyAdds(OnnxModel model, CalibrationSet data) => PerNode(model, data).Values.Sum();

    /// <summary>The multiply-adds per sample of each counted node, by its first output's name.</summary>
    public static IReadOnlyDictionary<string, long> PerNode(OnnxModel model, CalibrationSet data)
    {
        var graph = model.Graph;
        var counts = new Dictionary<string, long>(StringComparer.Ordinal);
        var nodes = graph.Nodes.Where(IsCounted).ToList();
        if (nodes.Count == 0)
        {
            return counts;
        }

        var outputs = nodes.Select(n => n.Output[0]).Distinct().ToArray();
        var inputs = nodes.SelectMany(n => n.OpType is "QLinearConv" or "QLinearMatMul" ? [n.Input[0], n.Input[3]] : n.Input.Take(2))
            .Where(i => i.Length > 0 && graph.GetInitializer(i) is null).Distinct().ToArray();
        var shapes = OrtModelRunner.Shapes(model, data, [.. outputs.Concat(inputs)]); // a factorized layer's first node outputs what its second reads
        foreach (var node in nodes)
        {
            var size = shapes[node.Output[0]].Aggregate(1L, (a, b) => a * b);
            counts[node.Output[0]] = node.OpType switch
            {
                "Attention" => Attention(graph, node, shapes),
                "MultiHeadAttention" => MultiHeadAttention(node, shapes),
                "ConvTranspose" => ConvTranspose(graph, node, shapes),
                _ => size * Inner(graph, node, shapes),
            };
        }

        return counts;
    }

    /// <summary>
    /// com.microsoft.Attention on x [B, S, C_in] with weights [C_in, C_q + C_k + C_v]: x·W is B·S·C_in·(C_q + C_k + C_v),
    /// Q·Kᵀ over all heads B·S·S·C_q, the probabilities times V B·S·S·C_v (without past state, keys are the S inputs).
    /// </summary>
    private static long Attention(OnnxGraph graph, NodeProto node, Dictionary<string, long[]> shapes)
    {
        var x = shapes[node.Input[0]];
        var w = graph.GetInitializer(node.Input[1])?.Dims.ToArray() ?? shapes[node.Input[1]];
        var sizes = node.Ints("qkv_hidden_sizes") ?? [w[^1] / 3, w[^1] / 3, w[^1] / 3];
        var (rows, length) = (x[0] * x[1], x[1]);
        return rows * (w[0] * w[^1] + length * (sizes[0] + sizes[^1]));
    }

    /// <summary>
    /// com.microsoft.MultiHeadAttention on query [B, S, C_q] and key [B, T, C_k] (its projections are counted as the
    /// MatMuls they are): Q·Kᵀ over all heads B·S·T·C_q, the probabilities times V B·S·T·C_v (the output is [B, S, C_v]).
    /// Packed or heads-first inputs are not counted.
    /// </summary>
    private static long MultiHeadAttention(NodeProto node, Dictionary<string, long[]> shapes)
    {
        if (node.Input.Count < 2 || !shapes.TryGetValue(node.Input[0], out var q) || !shapes.TryGetValue(node.Input[1], out var k) || q.Length != 3 || k.Length != 3)
        {
            return 0;
        }

        return q[0] * q[1] * k[1] * (q[2] + shapes[node.Output[0]][^1]);
    }

    /// <summary>
    /// ConvTranspose on x [N, C_in, …] with weight [C_in, C_out/group, k…]: every input element is multiplied into
    /// C_out/group·k outputs (the scatter that col2im sums), so N·C_in·H·W·(C_out/group)·k; the zeros a stride spreads
    /// between the input's pixels are not counted.
    /// </summary>
    private static long ConvTranspose(OnnxGraph graph, NodeProto node, Dictionary<string, long[]> shapes)
    {
        var w = graph.GetInitializer(node.Input[1])?.Dims.ToArray() ?? shapes[node.Input[1]];
        return shapes[node.Input[0]].Aggregate(1L, (a, b) => a * b) * w.Skip(1).Aggregate(1L, (a, b) => a * b);
    }

    private static long Inner(OnnxGraph graph, NodeProto node, Dictionary<string, long[]> shapes)
    {
        long[] Dims(string value) => graph.GetInitializer(value)?.Dims.ToArray() ?? shapes[value];
        switch (node.OpType)
        {
            case "Conv" or "ConvInteger" or "QLinearConv":
                var w = Dims(node.Input[node.OpType == "QLinearConv" ? 3 : 1]);
                return w.Skip(1).Aggregate(1L, (a, b) => a * b);
            case "MatMulNBits":
                return node.Int("K", 0);
            case "Gemm":
                var a = Dims(node.Input[0]);
                return node.Int("transA", 0) == 1 ? a[0] : a[^1];
            default:
                return Dims(node.Input[0])[^1];
        }
    }
}
