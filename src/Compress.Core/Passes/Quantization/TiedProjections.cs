using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Spec;

namespace Compress.Core.Passes.Quantization;

/// <summary>
/// A token table tied to output projections (algorithms.md §11): E [rows, width] read by <c>Gather</c> and by logits
/// h·Eᵀ — a <c>Gemm</c> with <c>transB</c> 1, or a <c>MatMul</c> behind a <c>Transpose</c> of E — quantized once and
/// read by both. The layouts agree: <c>com.microsoft.MatMulNBits</c> stores its B as [N, K/block, block·bits/8], one
/// row of codes per output column n, blocked along K; with N = rows and K = width that is E's rows blocked along the
/// row, which is exactly GatherBlockQuantized's [rows, width·bits/8] with <c>quantize_axis</c> last. So both nodes read
/// the same codes (and zero points); the float16 scales feed GatherBlockQuantized directly and MatMulNBits through one
/// Cast to float32, the codes through a Reshape to MatMulNBits' three axes, both folded by ONNX Runtime at load. That needs blocks that divide the width: int8 takes the widest power
/// of two from 16 to 128 that divides it, int4 the step's block size. Where none does, the layouts cannot match, and the
/// smallest correct form is one int8 table (a scale per row) behind a DequantizeLinear that every reader reads — one
/// copy of the codes, dequantized by ONNX Runtime on each run.
/// </summary>
public static class TiedProjections
{
    /// <summary>The widest int8 block tried: MLAS's n-bit kernels take blocks of 16 to 256.</summary>
    private const int WidestInt8Block = 128;

    /// <summary>
    /// Whether <paramref name="node"/> projects onto the rows of <paramref name="table"/> and the step selects it:
    /// Gemm(h, E, c) with transB 1 (no transA, alpha = beta = 1), or Transpose(E) read only as the B of MatMuls.
    /// </summary>
    public static bool Projects(OnnxGraph graph, NodeProto node, string table, QuantizeStep step)
    {
        if (!string.IsNullOrEmpty(node.Domain))
        {
            return false;
        }

        if (node.OpType == "Gemm")
        {
            return step.OpTypes.Contains("Gemm") && WeightSelection.Matches(node, step) && WeightSelection.IsPlainMatMul(node)
                && node.Input.Count >= 2 && node.Input[1] == table && node.Input[0] != table && node.Input.Skip(2).All(i => i != table)
                && node.Int("transB", 0) == 1;
        }

        if (node.OpType != "Transpose" || node.Input.Count != 1 || node.Output.Count != 1 || graph.IsGraphOutput(node.Output[0])
            || node.Ints("perm") is { } perm && !perm.SequenceEqual([1L, 0L]))
        {
            return false;
        }

        var readers = graph.GetConsumers(node.Output[0]);
        return readers.Count > 0 && step.OpTypes.Contains("MatMul") && readers.All(r => r.OpType == "MatMul" && string.IsNullOrEmpty(r.Domain)
            && r.Input.Count == 2 && r.Input[1] == node.Output[0] && r.Input[0] != node.Output[0] && WeightSelection.Matches(r, step));
    }

    /// <summary>
    /// Stores <paramref name="table"/> once for its Gathers and its projections (<paramref name="bits"/>: 8 or 4); false
    /// when it stays float (the per-row fallback needs opset 13).
    /// </summary>
    public static bool Store(CompressionContext context, QuantizeStep step, TensorProto table, IReadOnlyList<NodeProto> gathers,
        IReadOnlyList<NodeProto> projections, int bits)
    {
        var graph = context.Model.Graph;
        long rows = table.Dims[0], width = table.Dims[1];
        var block = bits == 8 ? Int8Block(width) : step.BlockSize;
        var count = projections.Sum(p => p.OpType == "Gemm" ? 1 : graph.GetConsumers(p.Output[0]).Count);
        if (block < EmbeddingTables.SmallestBlock || width % block != 0)
        {
            if ((context.Model.GetOpsetVersion("") ?? 1) < 13)
            {
                context.Notes.Add($"embeddings: '{table.Name}' kept float (tied to output projections; rows of width {width} have no shared {bits}-bit block, and a per-row DequantizeLinear needs opset 13)");
                return false;
            }

            EmbeddingTables.StoreRows(context, table, [.. gathers, .. projections]);
            context.Notes.Add($"embeddings: '{table.Name}' (tied to {count} output projection{(count == 1 ? "" : "s")}) stored once as int8 with a scale per row "
                + $"behind a DequantizeLinear read by all: rows of width {width} have no {bits}-bit block that both GatherBlockQuantized and MatMulNBits can share"
                + " (ONNX Runtime dequantizes the table on each run)");
            return true;
        }

        var (data, scales, zeroPoints) = EmbeddingTables.StoreBlocks(context, step, table, gathers, bits, block);
        var floatScales = graph.UniqueName(scales + "_float");
        var cast = new NodeProto { OpType = "Cast", Name = graph.UniqueName(table.Name + "_scales_float"), Input = { scales }, Output = { floatScales } };
        cast.Attribute.Add(OnnxAttribute.Int("to", (long)TensorProto.Types.DataType.Float));
        // MatMulNBits wants B as [N, blocks, bytes per block]: the same bytes, reshaped (folded at load like the Cast).
        var shape = graph.AddInitializer(OnnxTensors.Create(graph.UniqueName(data + "_blocks_shape"), new[] { rows, width / block, block * bits / 8 }, 3)).Name;
        var blocks = graph.UniqueName(data + "_blocks");
        var reshape = new NodeProto { OpType = "Reshape", Name = graph.UniqueName(table.Name + "_blocks"), Input = { data, shape }, Output = { blocks } };
        graph.Prepend(cast, reshape);

        var weights = zeroPoints is null ? new[] { blocks, floatScales } : new[] { blocks, floatScales, zeroPoints };
        var int8Arithmetic = bits == 8 && step.Activations != "none"; // int8 arithmetic, as the step's scheme has: 2.6× faster than float on the fixture
        foreach (var projection in projections)
        {
            if (projection.OpType == "Gemm")
            {
                graph.Replace(projection, MatMulNBitsQuantizer.Replacement(graph, projection, projection.Input[0], weights, width, rows, bits, block, int8Arithmetic, OnnxGraph.Describe(projection)));
                continue;
            }

            foreach (var matmul in graph.GetConsumers(projection.Output[0]).ToList())
            {
                graph.Replace(matmul, MatMulNBitsQuantizer.Replacement(graph, matmul, matmul.Input[0], weights, width, rows, bits, block, int8Arithmetic, matmul.Name));
            }

            graph.Remove(projection);
        }

        graph.RemoveInitializerIfUnused(table.Name); // the com.microsoft opset: EmbeddingTables.Quantize, for every table it quantized
        context.Notes.Add($"embeddings: '{table.Name}' quantized once for its {gathers.Count} Gather{(gathers.Count == 1 ? "" : "s")} and its {count} tied output projection{(count == 1 ? "" : "s")} "
            + $"(MatMulNBits reading the GatherBlockQuantized codes{(zeroPoints is null ? "" : " and zero points")}, int{bits} block {block})");
        return true;
    }

    /// <summary>The widest power of two from 16 to 128 that divides the width, or 0.</summary>
    private static int Int8Block(long width)
    {
        for (var block = WidestInt8Block; block >= EmbeddingTables.SmallestBlock; block /= 2)
        {
            if (width % block == 0)
            {
                return block;
            }
        }

        return 0;
    }
}
