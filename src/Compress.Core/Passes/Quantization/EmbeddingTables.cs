using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Torch;
using Compress.Spec;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Passes.Quantization;

/// <summary>
/// Constant lookup tables read by <c>Gather</c> — token, position and token-type embeddings, often half of a
/// transformer encoder's bytes — stored as ONNX Runtime's <c>com.microsoft.GatherBlockQuantized</c> (algorithms.md §11):
/// uint8 codes along each row, gathered and dequantized row by row at run time, so the table is never expanded whole.
/// int8 keeps one symmetric scale per row (a block as wide as the row; code 128 is zero); int4 takes blocks of the
/// step's block size along the row, two codes per byte, symmetric or with stored zero points as the step says. Scales
/// are float16 (the kernel then gathers float16 rows, cast to float32 after: half the scales' bytes, an error far below
/// the grid's). A
/// table cut by <c>Slice</c> (positions up to the sequence length) is int8 per row behind a DequantizeLinear. Every
/// quantize scheme (static, dynamic, weight-only) calls this for the <c>Gather</c> nodes it selects. A table an output
/// projection also reads transposed (tied weights) is quantized once and shared (<see cref="TiedProjections"/>); a table
/// any other op reads is left float and said in the notes.
/// </summary>
public static class EmbeddingTables
{
    /// <summary>ONNX Runtime's kernel takes blocks of a power of two, at least 16 wide.</summary>
    internal const int SmallestBlock = 16;

    /// <summary>
    /// Quantizes the tables of the step's selected <c>Gather</c> nodes to <paramref name="bits"/> (8 or 4; a layer
    /// allocated 32 bits stays float) and returns how many tables it stored quantized.
    /// </summary>
    /// <paramref name="unpack"/> (weight-only steps): whether a table (by its Gathers) is stored in the float
    /// form instead, packed codes ONNX Runtime unpacks at load (<see cref="UnpackedBlocks"/>).
    public static int Quantize(CompressionContext context, QuantizeStep step, int bits, Func<IReadOnlyList<NodeProto>, bool>? unpack = null)
    {
        if (!step.OpTypes.Contains("Gather"))
        {
            return 0;
        }

        var graph = context.Model.Graph;
        var quantized = 0;
        foreach (var (table, readers, projections) in Tables(context, step))
        {
            var layerBits = context.Plan.For(step, table.Name).Bits ?? bits;
            var width = table.Dims[1];
            if (layerBits == 32)
            {
                context.Notes.Add($"embeddings: '{table.Name}' kept float (allocated 32 bits)");
                continue;
            }

            if (layerBits is not (4 or 8) || (layerBits == 4 && width % 2 != 0 && readers[0].OpType == "Gather"))
            {
                context.Notes.Add($"embeddings: '{table.Name}' kept float ({layerBits}-bit rows of width {width} have no GatherBlockQuantized form)");
                continue;
            }

            if (readers[0].OpType == "Slice")
            {
                if ((context.Model.GetOpsetVersion("") ?? 1) < 13)
                {
                    context.Notes.Add($"embeddings: '{table.Name}' kept float (per-row DequantizeLinear needs opset 13)");
                    continue;
                }

                StoreRows(context, table, readers);
            }
            else if (unpack is not null && unpack(readers))
            {
                StoreUnpacked(context, step, table, readers, layerBits, BlockFor(step, width, layerBits));
            }
            else if (projections.Count > 0)
            {
                if (!TiedProjections.Store(context, step, table, readers, projections, layerBits))
                {
                    continue;
                }
            }
            else
            {
                StoreBlocks(context, step, table, readers, layerBits, BlockFor(step, width, layerBits));
                graph.RemoveInitializerIfUnused(table.Name);
            }

            quantized++;
        }

        if (quantized > 0)
        {
            context.Model.RequireOpset("com.microsoft", 1);
        }

        return quantized;
    }

    /// <summary>The progress line's tail: <c>, 3 embedding tables (GatherBlockQuantized)</c>, or nothing.</summary>
    public static string Describe(int tables) =>
        tables == 0 ? "" : $", {tables} embedding table{(tables == 1 ? "" : "s")} (GatherBlockQuantized)";

    /// <summary>
    /// Float [rows, width] initializers read only by selected nodes that take whole rows: Gather along axis 0, or
    /// Slice (a position table cut to the sequence length), with their readers.
    /// </summary>
    private static IEnumerable<(TensorProto Table, IReadOnlyList<NodeProto> Readers, IReadOnlyList<NodeProto> Projections)> Tables(CompressionContext context, QuantizeStep step)
    {
        var graph = context.Model.Graph;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var node in graph.Nodes.Where(n => n.OpType is "Gather" or "Slice" && string.IsNullOrEmpty(n.Domain) && WeightSelection.Matches(n, step)).ToList())
        {
            if (graph.GetInitializer(node.Input[0]) is not { } table || table.DataType != (int)TensorProto.Types.DataType.Float
                || table.Dims.Count != 2 || table.Dims[1] < SmallestBlock || !seen.Add(table.Name))
            {
                continue;
            }

            var all = graph.GetConsumers(table.Name);
            var readers = all.Where(r => TakesRows(r, node.OpType, table.Name)).ToList();
            // Tied weights: output projections reading the same table transposed share its quantized rows.
            var projections = node.OpType == "Gather" ? all.Where(r => TiedProjections.Projects(graph, r, table.Name, step)).ToList() : [];
            var other = all.FirstOrDefault(r => !projections.Contains(r) && (!readers.Contains(r) || !WeightSelection.Matches(r, step)));
            if (other is not null || graph.IsGraphOutput(table.Name))
            {
                context.Notes.Add($"embeddings: '{table.Name}' kept float (also read by {(other is null ? "a graph output" : $"'{OnnxGraph.Describe(other)}'")})");
                continue;
            }

            yield return (table, readers, projections);
        }
    }

    private static bool TakesRows(NodeProto node, string opType, string table) =>
        node.OpType == opType && string.IsNullOrEmpty(node.Domain) && node.Input[0] == table && node.Input.Skip(1).All(i => i != table)
        && (opType == "Slice" || node.Int("axis", 0) is 0 or -2);

    /// <summary>int8: one block as wide as the row (the next power of two); int4: the step's blocks.</summary>
    private static int BlockFor(QuantizeStep step, long width, int bits) =>
        bits == 8 ? (int)Math.Max(SmallestBlock, System.Numerics.BitOperations.RoundUpToPowerOf2((uint)width)) : step.BlockSize;

    /// <summary>
    /// The table as GatherBlockQuantized codes (uint8 [rows, width·bits/8], low nibble first), float16 scales [rows, blocks]
    /// and, on an asymmetric grid, packed zero points; its Gathers rewritten. Returns the three initializers' names.
    /// </summary>
    internal static (string Data, string Scales, string? ZeroPoints) StoreBlocks(CompressionContext context, QuantizeStep step, TensorProto table,
        IReadOnlyList<NodeProto> gathers, int bits, int block)
    {
        var graph = context.Model.Graph;
        using var scope = NewDisposeScope();
        // Scales stored as float16 (below), the kernel's rows come out float16.
        var (values, symmetric, codes, scales, zeros, decoded) = Fit(context, step, table, bits, block, s => s.to_type(ScalarType.Float16).to_type(ScalarType.Float32));
        long rows = values.shape[0], width = values.shape[1];
        var dequantized = decoded.to_type(ScalarType.Float16).to_type(ScalarType.Float32);
        context.Frontier?.SetWeight(table.Name, dequantized);

        var record = context.Layer(table.Name, OnnxGraph.Describe(gathers[0]), "Gather", values.numel());
        record.Format = new Plans.WeightFormat(Plans.WeightEncoding.GatherBlockQuantized, bits) { BlockSize = bits == 8 && block >= width ? null : block, Asymmetric = !symmetric };
        record.RelativeError += WeightQuantization.RelativeError(values, dequantized);

        var rowCodes = IntegerGrid.Unblocks(codes, width).to_type(ScalarType.Byte); // [rows, width]: the kernel reads rows unpadded
        var data = bits == 4 ? IntegerGrid.PackNibbles(rowCodes) : rowCodes;
        var blocks = scales.shape[1];
        var dataName = graph.AddInitializer(data.contiguous().ToOnnx(graph.UniqueName(table.Name + "_quantized"))).Name;
        record.Store(dataName);
        var scaleName = graph.AddInitializer(scales.reshape(rows, blocks).to_type(ScalarType.Float16).contiguous().ToOnnx(graph.UniqueName(table.Name + "_scales"))).Name;
        string? zeroName = null;
        if (!symmetric)
        {
            var zp = zeros.reshape(rows, blocks).to_type(ScalarType.Byte);
            var stored = bits == 4 ? IntegerGrid.PackNibbles(blocks % 2 == 0 ? zp : nn.functional.pad(zp, [0, 1])) : zp;
            zeroName = graph.AddInitializer(stored.contiguous().ToOnnx(graph.UniqueName(table.Name + "_zero_points"))).Name;
        }

        foreach (var gather in gathers)
        {
            var rows16 = graph.UniqueName(gather.Output[0] + "_fp16");
            var replacement = new NodeProto
            {
                OpType = "GatherBlockQuantized", Domain = "com.microsoft", Name = gather.Name,
                Input = { dataName, gather.Input[1], scaleName }, Output = { rows16 },
            };
            if (zeroName is not null)
            {
                replacement.Input.Add(zeroName);
            }

            replacement.Attribute.Add(OnnxAttribute.Int("gather_axis", 0));
            replacement.Attribute.Add(OnnxAttribute.Int("quantize_axis", 1));
            replacement.Attribute.Add(OnnxAttribute.Int("block_size", block));
            replacement.Attribute.Add(OnnxAttribute.Int("bits", bits));
            var cast = new NodeProto { OpType = "Cast", Name = graph.UniqueName(gather.Name + "_float"), Input = { rows16 }, Output = { gather.Output } };
            cast.Attribute.Add(OnnxAttribute.Int("to", (long)TensorProto.Types.DataType.Float));
            graph.Replace(gather, replacement, cast);
        }

        return (dataName, scaleName, zeroName);
    }

    /// <summary>
    /// The table [rows, width] on <paramref name="bits"/>-bit blocks of <paramref name="block"/> along its rows (symmetric
    /// for 8 bits or as the step says), the fitted scales as they will be stored (<paramref name="stored"/>), the codes,
    /// and the table they decode to (tensors in the caller's dispose scope).
    /// </summary>
    private static (Tensor Values, bool Symmetric, Tensor Codes, Tensor Scales, Tensor Zeros, Tensor Dequantized) Fit(CompressionContext context, QuantizeStep step,
        TensorProto table, int bits, int block, Func<Tensor, Tensor> stored)
    {
        var values = context.Model.ToTorch(table);
        var symmetric = bits == 8 || MatMulNBitsQuantizer.Symmetric(context, step);
        var grid = new IntegerGrid(bits, symmetric);
        var blocked = IntegerGrid.Blocks(values, block);
        var (fitted, zeros) = grid.Fit(blocked, 2);
        var scales = stored(fitted);
        var codes = grid.Codes(blocked, scales, zeros);
        return (values, symmetric, codes, scales, zeros, IntegerGrid.Unblocks(IntegerGrid.Dequantize(codes, scales, zeros), values.shape[1]));
    }

    /// <summary>
    /// The float form: the table's blocks as in <see cref="StoreBlocks"/> (float16 scales), behind the chain that
    /// rebuilds the float table under its own name at load, so its Gathers and any tied projection read it unchanged.
    /// </summary>
    private static void StoreUnpacked(CompressionContext context, QuantizeStep step, TensorProto table, IReadOnlyList<NodeProto> gathers, int bits, int block)
    {
        using var scope = NewDisposeScope();
        var (values, symmetric, codes, scales, zeros, dequantized) = Fit(context, step, table, bits, block, UnpackedBlocks.RoundToHalf);
        long width = values.shape[1];
        context.Frontier?.SetWeight(table.Name, dequantized);

        var record = context.Layer(table.Name, OnnxGraph.Describe(gathers[0]), "Gather", values.numel());
        record.Format = new Plans.WeightFormat(Plans.WeightEncoding.UnpackedBlocks, bits) { BlockSize = block, Asymmetric = !symmetric };
        record.RelativeError += WeightQuantization.RelativeError(values, dequantized);
        record.Store(UnpackedBlocks.Store(context.Model.Graph, table.Name, codes, scales, symmetric ? null : zeros, bits, width, transposed: false));
    }

    /// <summary>
    /// A table read by Slice: int8 with one symmetric scale per row behind a per-axis DequantizeLinear, whatever the
    /// step's bits (such tables are small; ONNX Runtime dequantizes it once per run).
    /// </summary>
    internal static void StoreRows(CompressionContext context, TensorProto table, IReadOnlyList<NodeProto> readers)
    {
        var graph = context.Model.Graph;
        using var scope = NewDisposeScope();
        var values = context.Model.ToTorch(table);
        var (q, scales) = WeightQuantization.SymmetricInt8(values, 0);
        var dequantized = WeightQuantization.Dequantize(q, scales, 0);
        context.Frontier?.SetWeight(table.Name, dequantized);

        var record = context.Layer(table.Name, OnnxGraph.Describe(readers[0]), readers[0].OpType, values.numel());
        record.Format = new Plans.WeightFormat(Plans.WeightEncoding.QdqInt8, 8);
        record.RelativeError += WeightQuantization.RelativeError(values, dequantized);

        var codesName = graph.AddInitializer(q.ToOnnx(graph.UniqueName(table.Name + "_quantized"))).Name;
        record.Store(codesName);
        var scaleName = graph.AddInitializer(scales.contiguous().ToOnnx(graph.UniqueName(table.Name + "_scale"))).Name;
        var output = graph.UniqueName(table.Name + "_dequantized");
        var dq = new NodeProto { OpType = "DequantizeLinear", Name = graph.UniqueName(table.Name + "_DequantizeLinear"), Input = { codesName, scaleName }, Output = { output } };
        dq.Attribute.Add(OnnxAttribute.Int("axis", 0));
        graph.Prepend(dq);
        graph.RedirectConsumers(table.Name, output, except: dq, graphOutputs: false);
        graph.RemoveInitializerIfUnused(table.Name);
    }
}
