using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Passes.SecondOrder;
using Compress.Core.Torch;
using Compress.Spec;
using Compress.Spec.Methods;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Passes.Quantization;

/// <summary>
/// Weight-only block quantization to ONNX Runtime's com.microsoft MatMulNBits (algorithms.md §11), for MatMul
/// <b>and Gemm</b> (ONNX Runtime's own quantizer leaves Gemm alone). Per output column n and block of
/// <c>block_size</c> rows of K: symmetric q = clamp(round(w/s), −2^(b−1), 2^(b−1)−1) + 2^(b−1) with
/// s = max|w| / (2^(b−1) − 1) and the default zero point; or asymmetric min-max with explicit zero points.
/// B is stored [N, ⌈K/bs⌉, bs·b/8], low nibble first; K is zero-padded to whole blocks.
/// </summary>
[ImplementsMethod(RtnMethod.Name, GptqMethod.Name, Scheme = QuantizeSchemes.WeightOnly)]
public sealed class MatMulNBitsQuantizer(QuantizeStep step) : ICompressionPass
{
    private readonly bool _gptqNamed = MethodCatalog.Of(step) == GptqMethod.Descriptor;

    public string Name => "quantize/weight-only";

    public void Apply(CompressionContext context)
    {
        TorchRuntime.EnsureLoaded();
        var graph = context.Model.Graph;
        var converted = 0;
        var fallbacks = 0;

        // int4 without a named method, calibration data at hand: GPTQ (with act-order unless the step says otherwise) rather than round-to-nearest.
        var gptqByDefault = !_gptqNamed && step.MethodDefaulted && step.Weights == "int4" && context.HasCalibration;
        var gptq = _gptqNamed || gptqByDefault;
        var symmetric = Symmetric(context, step);
        var maxLayerError = step.Option("maxLayerError", GptqMethod.MaxLayerError);
        if (gptqByDefault)
        {
            context.Notes.Add($"weight-only: int4 rounded by GPTQ{(step.ActOrder ? " with act-order" : "")}{(symmetric ? "" : " on an asymmetric grid")}, the calibration data being given ('method': 'rtn' for round-to-nearest{(symmetric ? "" : ", 'symmetric': true for no zero points")}); "
                + $"layers whose output error stays above {maxLayerError:P1} are stored int8");
        }

        static IEnumerable<WeightUse> Selected(OnnxGraph graph, QuantizeStep step) =>
            WeightSelection.Select(graph, step).Where(u => u.Node.OpType is "MatMul" or "Gemm" && u.Weight.Dims.Count == 2);
        var forms = new WeightForms(context, step);
        using var sequential = gptq ? context.Layerwise(GptqMethod.Name) : null;
        var tables = EmbeddingTables.Quantize(context, step, step.Weights == "int4" ? 4 : 8, forms.UnpacksTable);
        var unpacked = 0;
        var int8 = 0;
        var stored = new Dictionary<string, StoredWeight>(StringComparer.Ordinal);
        var selected = Selected(graph, step).ToList();
        var readers = new Dictionary<NodeProto, WeightUse>(ReferenceEqualityComparer.Instance);
        selected.ForEach(u => readers[u.Node] = u);
        foreach (var use in selected)
        {
            var node = use.Node;
            if (!WeightSelection.IsPlainMatMul(node))
            {
                context.Notes.Add($"weight-only: '{use.NodeName}' kept float (Gemm with transA, alpha or beta)");
                continue;
            }

            if (stored.TryGetValue(use.Weight.Name, out var first))
            {
                converted += ReadStored(context, use, first) ? 1 : 0;
                continue;
            }

            // The step's bits, or the layer's own from an allocation (4 or 8; 32 keeps the layer float).
            var plan = context.Plan.For(step, use.Weight.Name);
            var bits = plan.Bits ?? (step.Weights == "int4" ? 4 : 8);
            if (bits is not (4 or 8))
            {
                context.Notes.Add($"weight-only: '{use.NodeName}' kept float (allocated {bits} bits)");
                continue;
            }

            using var scope = NewDisposeScope();
            var w = context.Model.ToTorch(use.Weight);
            var nk = use.OutputAxis == 0 ? w : w.t().contiguous(); // [N, K]
            long n = nk.shape[0], k = nk.shape[1];
            var blocks = (k + step.BlockSize - 1) / step.BlockSize;
            var padded = IntegerGrid.Blocks(nk, step.BlockSize);
            var grid = new IntegerGrid(bits, symmetric);
            Tensor codes, scales, zeroPoints;
            var rounding = gptq ? "GPTQ" : null;
            if (gptq)
            {
                var mayFallBack = bits == 4 && plan.Source != Plans.PlanSource.Allocation;
                (codes, scales, zeroPoints, var outputError) = Gptq.Quantize(context, use, nk, grid, step, step.ActOrder, measureError: mayFallBack);
                if (outputError > maxLayerError)
                {
                    // Rounding did not hold this layer: int8 round-to-nearest keeps its error about 250× smaller.
                    context.Notes.Add($"weight-only: '{use.NodeName}' stored int8, its int4 output error {outputError:P2} being above {maxLayerError:P1}");
                    bits = 8;
                    grid = new IntegerGrid(bits, symmetric);
                    (scales, zeroPoints) = grid.Fit(padded, 2);
                    codes = grid.Codes(padded, scales, zeroPoints);
                    rounding = null;
                    fallbacks++;
                }
                else
                {
                    var inside = arange(blocks * step.BlockSize).lt(k).reshape(1, blocks, step.BlockSize);
                    codes = where(inside, IntegerGrid.Blocks(codes, step.BlockSize), zeroPoints.expand(n, blocks, step.BlockSize));
                }
            }
            else
            {
                (scales, zeroPoints) = grid.Fit(padded, 2);
                codes = grid.Codes(padded, scales, zeroPoints);
            }

            var form = forms.For(graph, use, readers);
            var unpack = form != WeightForm.Kernel;
            if (unpack)
            {
                scales = UnpackedBlocks.RoundToHalf(scales); // stored float16 when all fit: half the scales' bytes, 2⁻¹¹ relative
            }

            var dequantized = IntegerGrid.Dequantize(codes, scales, zeroPoints);
            var effective = IntegerGrid.Unblocks(dequantized, k); // [N, K]: what the MatMulNBits node will compute with
            Tensor? columnScales = null;
            if (form == WeightForm.Int8)
            {
                // The int8 form multiplies with the dequantized weight re-quantized per output column: ≤ half an int8 step more.
                columnScales = UnpackedBlocks.ColumnScales(effective.t());
                effective = (UnpackedBlocks.Int8Codes(effective.t(), columnScales) * columnScales).t();
            }

            if (context.Frontier is { } frontier)
            {
                frontier.SetWeight(use.Weight.Name, use.OutputAxis == 0 ? effective : effective.t());
            }

            codes = codes.to_type(ScalarType.Byte);
            var record = context.Layer(use.Weight.Name, use.NodeName, node.OpType, w.numel());
            var encoding = form switch { WeightForm.Int8 => Plans.WeightEncoding.Int8AtLoad, WeightForm.Float => Plans.WeightEncoding.UnpackedBlocks, _ => Plans.WeightEncoding.MatMulNBits };
            record.Format = new Plans.WeightFormat(encoding, bits)
            {
                BlockSize = step.BlockSize, Asymmetric = !symmetric, Rounding = rounding,
            };
            record.RelativeError += WeightQuantization.RelativeError(nk, effective);

            var baseName = use.Weight.Name;
            if (columnScales is not null)
            {
                // DynamicQuantizeMatMul reads the chain's int8 [K, N]; ONNX Runtime folds the chain at load and prepacks it.
                var columnScaleName = graph.AddInitializer(columnScales.contiguous().ToOnnx(graph.UniqueName(baseName + "_column_scales"))).Name;
                var (data, weight) = UnpackedBlocks.StoreInt8(graph, baseName, codes, scales, symmetric ? null : zeroPoints, bits, k, transposed: use.OutputAxis == 1, columnScaleName);
                graph.Replace(node, DynamicQuantizer.Replacement(graph, node, weight, columnScaleName)!);
                stored[baseName] = new StoredWeight(use, WeightForm.Int8, [weight, columnScaleName], k, n, bits);
                record.Store(data);
                converted++;
                int8++;
                continue;
            }

            if (unpack)
            {
                // The node stays as it is; its weight becomes the chain ONNX Runtime folds back into float32 at load.
                record.Store(UnpackedBlocks.Store(graph, baseName, codes, scales, symmetric ? null : zeroPoints, bits, k, transposed: use.OutputAxis == 1));
                stored[baseName] = new StoredWeight(use, WeightForm.Float, [], k, n, bits);
                converted++;
                unpacked++;
                continue;
            }

            var packed = bits == 4 ? IntegerGrid.PackNibbles(codes) : codes; // [N, blocks, bs·bits/8]
            var bName = graph.AddInitializer(packed.contiguous().ToOnnx(graph.UniqueName(baseName + "_nbits"))).Name;
            record.Store(bName);
            var inputs = new List<string> { node.Input[0], bName };
            inputs.AddRange(ScalesAndZeroPoints(graph, baseName, scales, symmetric ? null : zeroPoints, n, blocks, bits));

            graph.Replace(node, Replacement(graph, node, node.Input[0], inputs.Skip(1).ToList(), k, n, bits, step.BlockSize, int8Arithmetic: false, node.Name));
            graph.RemoveInitializerIfUnused(baseName);
            stored[baseName] = new StoredWeight(use, WeightForm.Kernel, inputs.Skip(1).ToList(), k, n, bits);

            converted++;
        }

        if (converted > 0)
        {
            FloatVectors.ToFloat16(context, "weight-only");
        }

        context.Model.RequireOpset("com.microsoft", 1);
        forms.Note(context, unpacked, int8);
        context.Progress($"quantize: {step.Weights} weight-only (MatMulNBits, block {step.BlockSize}) on {converted} MatMul/Gemm nodes"
            + (fallbacks > 0 ? $" ({fallbacks} of them int8)" : "") + (unpacked > 0 ? $" ({unpacked} of them unpacked at load)" : "") + (int8 > 0 ? $" ({int8} of them int8 at load)" : "") + EmbeddingTables.Describe(tables));
    }

    /// <summary>
    /// A weight quantized for its first reader (<see cref="First"/>): its form and what that reader now reads —
    /// the int8 weight and its column scales, or MatMulNBits' B, scales and zero points.
    /// </summary>
    private sealed record StoredWeight(WeightUse First, WeightForm Form, IReadOnlyList<string> Inputs, long K, long N, int Bits);

    /// <summary>
    /// Another reader of a weight already quantized (layers sharing one matrix, or one matrix read as Gemm B with
    /// <c>transB</c> and as MatMul B): the codes are stored once. A reader in the first reader's layout reads the same
    /// int8 weight or MatMulNBits inputs; any other reader reads the float-at-load chain, which rebuilds the weight in
    /// its source layout under its own name — or, in the kernel form, the float weight itself, kept while read.
    /// Returns whether the reader now multiplies with the quantized weight.
    /// </summary>
    private bool ReadStored(CompressionContext context, WeightUse use, StoredWeight first)
    {
        var graph = context.Model.Graph;
        var node = use.Node;
        var sameLayout = use.OutputAxis == first.First.OutputAxis;
        var shares = $"weight-only: '{use.NodeName}' shares '{use.Weight.Name}' with '{first.First.NodeName}'";
        switch (first.Form)
        {
            case WeightForm.Int8 when sameLayout && DynamicQuantizer.Replacement(graph, node, first.Inputs[0], first.Inputs[1]) is { } replacement:
                graph.Replace(node, replacement);
                context.Notes.Add($"{shares}: the same int8 weight");
                return true;
            case WeightForm.Int8 or WeightForm.Float:
                context.Notes.Add($"{shares}: it reads the weight unpacked at load{(sameLayout ? "" : " (in its own layout)")}");
                return true;
            case WeightForm.Kernel when sameLayout:
                graph.Replace(node, Replacement(graph, node, node.Input[0], first.Inputs, first.K, first.N, first.Bits, step.BlockSize, int8Arithmetic: false, node.Name));
                graph.RemoveInitializerIfUnused(use.Weight.Name);
                context.Notes.Add($"{shares}: the same MatMulNBits weight");
                return true;
            default:
                context.Notes.Add($"{shares} but reads it in the other layout: kept float ('form': 'float' or 'int8' stores it once for both)");
                return false;
        }
    }

    /// <summary>
    /// The step's grid: as the spec says; when it leaves <c>symmetric</c> out of the int4 GPTQ default (int4, calibration
    /// data, no method named), asymmetric with zero points: on the text encoder that keeps 90.6 % of nearest neighbours
    /// instead of 83.6 % (pooled cosine 0.9962 against 0.9935) for 4 % more bytes (algorithms.md §11).
    /// </summary>
    internal static bool Symmetric(CompressionContext context, QuantizeStep step) =>
        step.Symmetric && !(step.SymmetricDefaulted && step.MethodDefaulted && step.Weights == "int4" && step.Scheme == QuantizeSchemes.WeightOnly && context.HasCalibration);

    /// <summary>
    /// MatMulNBits' scales ([N · blocks] float32) and, when given, zero points ([N, blocks] as uint8, two 4-bit ones a
    /// byte with each row padded to whole bytes) as new initializers named after <paramref name="baseName"/>.
    /// </summary>
    internal static IEnumerable<string> ScalesAndZeroPoints(OnnxGraph graph, string baseName, Tensor scales, Tensor? zeroPoints, long n, long blocks, int bits)
    {
        yield return graph.AddInitializer(scales.to_type(ScalarType.Float32).reshape(n * blocks).contiguous().ToOnnx(graph.UniqueName(baseName + "_scales"))).Name;
        if (zeroPoints is not null)
        {
            var zp = zeroPoints.reshape(n, blocks).to_type(ScalarType.Byte);
            var packed = bits == 4 ? IntegerGrid.PackNibbles(blocks % 2 == 0 ? zp : nn.functional.pad(zp, [0, 1])) : zp;
            yield return graph.AddInitializer(packed.reshape(-1).contiguous().ToOnnx(graph.UniqueName(baseName + "_zero_points"))).Name;
        }
    }

    /// <summary>
    /// The MatMulNBits node that replaces <paramref name="node"/> (a MatMul, or a Gemm with transposed B) reading
    /// <paramref name="input"/> and <paramref name="weights"/> (B, scales, zero points if any), K × N in blocks; a Gemm's
    /// bias follows in an Add named after <paramref name="biasName"/>. <paramref name="int8Arithmetic"/> sets
    /// <c>accuracy_level</c> 4 (int8 arithmetic, for 8-bit weights under a scheme that quantizes activations).
    /// </summary>
    internal static NodeProto[] Replacement(OnnxGraph graph, NodeProto node, string input, IReadOnlyList<string> weights, long k, long n, int bits, int blockSize,
        bool int8Arithmetic, string biasName)
    {
        var output = node.Output[0];
        var hasBias = node.OpType == "Gemm" && node.Input.Count > 2 && node.Input[2].Length > 0;
        var matmulOutput = hasBias ? graph.UniqueName(output + "_nobias") : output;
        var replacement = new NodeProto { OpType = "MatMulNBits", Domain = "com.microsoft", Name = node.Name, Input = { input }, Output = { matmulOutput } };
        replacement.Input.AddRange(weights);
        replacement.Attribute.Add(OnnxAttribute.Int("K", k));
        replacement.Attribute.Add(OnnxAttribute.Int("N", n));
        replacement.Attribute.Add(OnnxAttribute.Int("bits", bits));
        replacement.Attribute.Add(OnnxAttribute.Int("block_size", blockSize));
        if (int8Arithmetic)
        {
            replacement.Attribute.Add(OnnxAttribute.Int("accuracy_level", 4));
        }

        return hasBias
            ? [replacement, new NodeProto { OpType = "Add", Name = graph.UniqueName(biasName + "_bias"), Input = { matmulOutput, node.Input[2] }, Output = { output } }]
            : [replacement];
    }
}
