using System.Globalization;
using Compress.Core.Calibration;
using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Passes.Quantization;
using Compress.Core.Reports;
using Compress.Core.Torch;
using Microsoft.ML.OnnxRuntime;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Evaluation;

/// <summary>
/// Which weight-only form ran faster (algorithms.md §11): the written model against itself in the other forms its
/// layers can take — <c>int8 at load</c> (DynamicQuantizeMatMul over codes turned into int8 at load), <c>float at load</c>
/// (the codes unpacked to float32 at load, read by the source's MatMul/Gemm) and <c>MatMulNBits</c> (the codes packed in
/// memory) — each rebuilt from the written model's own codes, so all compute from the same int4 values. Timed at batch 1,
/// one thread, two interleaved rounds. A figure for the report: it never changes the bytes written.
/// </summary>
public static class WeightFormTiming
{
    public const string Int8 = "int8 at load";
    public const string Float = "float at load";
    public const string Kernel = "MatMulNBits";

    private static readonly TimeSpan Budget = TimeSpan.FromSeconds(0.5);

    /// <summary>
    /// The batch-1 milliseconds of each form <paramref name="written"/> can take, the shipped one marked; null when it
    /// has no weight-only layer of the unpacked forms (nothing to compare).
    /// </summary>
    public static IReadOnlyList<FormFigures>? Measure(OnnxModel written, CalibrationSet data)
    {
        var (int8, unpacked) = Count(written.Graph);
        if (int8 + unpacked == 0)
        {
            return null;
        }

        var shipped = int8 >= unpacked ? Int8 : Float;
        var variants = new List<(string Form, OnnxModel Model)> { (shipped, written) };
        var floatForm = written;
        if (int8 > 0)
        {
            floatForm = AsFloat(written);
            variants.Add((Float, floatForm));
        }

        variants.Add((Kernel, KernelOf(floatForm)));
        var times = variants.ToDictionary(v => v.Form, _ => new List<double>());
        try
        {
            for (var round = 0; round < 2; round++)
            {
                foreach (var (form, model) in variants)
                {
                    times[form].Add(LatencyComparison.Batch1Ms(model, data, Budget));
                }
            }
        }
        catch (OnnxRuntimeException)
        {
            return null; // a form ONNX Runtime cannot run here is not one to compare
        }

        return [.. variants.Select(v => new FormFigures(v.Form, times[v.Form].Min(), v.Form == shipped))];
    }

    /// <summary>One line for the report: each form's time, which ran fastest, and which was shipped.</summary>
    public static string Describe(IReadOnlyList<FormFigures> forms)
    {
        var c = CultureInfo.InvariantCulture;
        var fastest = forms.MinBy(f => f.Batch1Ms)!;
        var shipped = forms.First(f => f.Shipped);
        var times = string.Join(", ", forms.Select(f => string.Create(c, $"{f.Form} {f.Batch1Ms:0.000} ms{(f.Shipped ? " (shipped)" : "")}")));
        var verdict = fastest == shipped || fastest.Batch1Ms >= shipped.Batch1Ms * (1 - LatencyGuard.Margin)
            ? $"the shipped form, {shipped.Form}, ran fastest{(fastest == shipped ? "" : $" (within {LatencyGuard.Margin:P0}, noise)")}"
            : $"{fastest.Form} ran faster than the shipped {shipped.Form} ({shipped.Batch1Ms / fastest.Batch1Ms:0.00}×); 'quantize.form' chooses the form";
        return $"weight-only forms at batch 1 (1 thread, median, the same codes): {times}: {verdict}";
    }

    /// <summary>DynamicQuantizeMatMuls reading an int8-at-load chain, and MatMul/Gemm reading a float-at-load chain.</summary>
    private static (int Int8, int Unpacked) Count(OnnxGraph graph)
    {
        int int8 = 0, unpacked = 0;
        foreach (var node in graph.Nodes)
        {
            if (node.OpType == "DynamicQuantizeMatMul" && FloatOfInt8(graph, node.Input[1]) is not null)
            {
                int8++;
            }
            else if (node.OpType is "MatMul" or "Gemm" && node.Input.Count > 1 && Chain.Of(graph, node.Input[1]) is not null)
            {
                unpacked++;
            }
        }

        return (int8, unpacked);
    }

    /// <summary>The float weight an int8-at-load weight is re-quantized from (Cast ← Clip ← Round ← Div), or null.</summary>
    private static string? FloatOfInt8(OnnxGraph graph, string weight) =>
        graph.GetProducer(weight) is { OpType: "Cast" } cast && graph.GetProducer(cast.Input[0]) is { OpType: "Clip" } clip
            && graph.GetProducer(clip.Input[0]) is { OpType: "Round" } round && graph.GetProducer(round.Input[0]) is { OpType: "Div" } div
            && Chain.Of(graph, div.Input[0]) is not null
            ? div.Input[0]
            : null;

    /// <summary>A copy of <paramref name="model"/> whose int8-at-load layers read the float weight instead: the float-at-load form.</summary>
    internal static OnnxModel AsFloat(OnnxModel model)
    {
        var copy = new OnnxModel(model.Proto.Clone());
        var graph = copy.Graph;
        foreach (var node in graph.Nodes.Where(n => n.OpType == "DynamicQuantizeMatMul").ToList())
        {
            if (FloatOfInt8(graph, node.Input[1]) is not { } weight)
            {
                continue;
            }

            var bias = node.Input.Count > 4 ? node.Input[4] : "";
            graph.Replace(node, bias.Length > 0
                ? new NodeProto { OpType = "Gemm", Name = node.Name, Input = { node.Input[0], weight, bias }, Output = { node.Output } }
                : new NodeProto { OpType = "MatMul", Name = node.Name, Input = { node.Input[0], weight }, Output = { node.Output } });
        }

        graph.RemoveUnread(); // the chains the rewrite left
        return copy;
    }

    /// <summary>A copy of <paramref name="model"/> whose int8- and float-at-load layers are MatMulNBits over the same codes.</summary>
    internal static OnnxModel AsKernel(OnnxModel model) => KernelOf(AsFloat(model));

    /// <summary>
    /// A copy of <paramref name="floatForm"/> (no int8-at-load layer left: the float form, as <see cref="AsFloat"/> makes
    /// it) whose float-at-load layers are MatMulNBits over the same codes.
    /// </summary>
    private static OnnxModel KernelOf(OnnxModel floatForm)
    {
        TorchRuntime.EnsureLoaded();
        var copy = new OnnxModel(floatForm.Proto.Clone());
        var graph = copy.Graph;
        foreach (var node in graph.Nodes.Where(n => n.OpType is "MatMul" or "Gemm").ToList())
        {
            if (node.Input.Count < 2 || Chain.Of(graph, node.Input[1]) is not { } chain || !chain.RowsAreOutputsOf(node))
            {
                continue; // a reader in the other layout (a weight shared with a transposed reader) keeps the float form
            }

            using var scope = NewDisposeScope();
            var data = graph.GetInitializer(chain.Data)!;
            long rows = chain.Rows, blocks = chain.Blocks, bytes = chain.Block * chain.Bits / 8;
            var b = data.Clone();
            b.Name = graph.UniqueName(chain.Data + "_nbits");
            b.Dims.Clear();
            b.Dims.AddRange([rows, blocks, bytes]);
            var inputs = new List<string> { graph.AddInitializer(b).Name };
            var zeros = chain.Zeros is { } z ? copy.ToTorch(graph.GetInitializer(z)!) : null;
            inputs.AddRange(MatMulNBitsQuantizer.ScalesAndZeroPoints(graph, chain.Data, copy.ToTorch(graph.GetInitializer(chain.Scales)!), zeros, rows, blocks, chain.Bits));

            graph.Replace(node, MatMulNBitsQuantizer.Replacement(graph, node, node.Input[0], inputs, chain.Columns, rows, chain.Bits, (int)chain.Block, int8Arithmetic: false, node.Name));
        }

        copy.RequireOpset("com.microsoft", 1);
        graph.RemoveUnread(); // the chains the rewrite left
        return copy;
    }

    /// <summary>
    /// The float-at-load chain (<see cref="UnpackedBlocks.Store"/>) producing a weight: its codes (<see cref="Data"/>:
    /// [rows, cols/2, 1] nibbles or [rows, blocks, block] bytes), scales, zero points (null: 2^(bits−1)), and shape;
    /// <see cref="Transposed"/> when it ends [cols, rows] (after an odd number of Transposes).
    /// </summary>
    private sealed record Chain(string Data, string Scales, string? Zeros, int Bits, long Rows, long Blocks, long Block, long Columns)
    {
        public bool Transposed { get; private init; }

        /// <summary>Whether <paramref name="node"/> reads the chain as its B with the codes' rows as its output columns, as MatMulNBits reads them.</summary>
        public bool RowsAreOutputsOf(NodeProto node) => Transposed != (node.OpType == "Gemm" && node.Int("transB", 0) == 1);

        public static Chain? Of(OnnxGraph graph, string weight)
        {
            long? cut = null;
            var transposes = 0;
            var node = graph.GetProducer(weight);
            while (node is { OpType: "Transpose" or "Reshape" or "Slice" })
            {
                transposes += node.OpType == "Transpose" ? 1 : 0;
                if (node.OpType == "Slice" && node.Input.Count > 2 && graph.GetInitializer(node.Input[2]) is { } ends)
                {
                    cut = ends.Int64Data.Count > 0 ? ends.Int64Data[0] : BitConverter.ToInt64(ends.RawData.Span[..8]);
                }

                node = graph.GetProducer(node.Input[0]);
            }

            if (node is not { OpType: "Mul" } mul || graph.GetProducer(mul.Input[0]) is not { OpType: "Sub" } sub
                || graph.GetProducer(sub.Input[0]) is not { OpType: "Cast" } cast)
            {
                return null;
            }

            var scales = graph.GetInitializer(mul.Input[1])?.Name ?? (graph.GetProducer(mul.Input[1]) is { OpType: "Cast" } c ? graph.GetInitializer(c.Input[0])?.Name : null);
            var zeros = graph.GetProducer(sub.Input[1]) is { OpType: "Cast" } z ? graph.GetInitializer(z.Input[0])?.Name : null;
            if (scales is null || (zeros is null && graph.GetInitializer(sub.Input[1]) is null))
            {
                return null;
            }

            var scaleDims = graph.GetInitializer(scales)!.Dims;
            if (scaleDims.Count != 3)
            {
                return null;
            }

            long rows = scaleDims[0], blocks = scaleDims[1];
            if (graph.GetInitializer(cast.Input[0]) is { Dims.Count: 3 } bytes)
            {
                return new Chain(bytes.Name, scales, zeros, 8, rows, blocks, bytes.Dims[2], cut ?? blocks * bytes.Dims[2]) { Transposed = transposes % 2 == 1 };
            }

            if (graph.GetProducer(cast.Input[0]) is { OpType: "Reshape" } reshape && graph.GetProducer(reshape.Input[0]) is { OpType: "Concat" } concat
                && graph.GetProducer(concat.Input[0]) is { OpType: "Mod" } mod && graph.GetInitializer(mod.Input[0]) is { Dims.Count: 3 } nibbles)
            {
                var block = nibbles.Dims[1] * 2 / blocks;
                return new Chain(nibbles.Name, scales, zeros, 4, rows, blocks, block, cut ?? blocks * block) { Transposed = transposes % 2 == 1 };
            }

            return null;
        }
    }
}
