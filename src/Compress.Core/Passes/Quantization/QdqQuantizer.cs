using Compress.Core.Evaluation;
using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Torch;
using Compress.Spec;
using Compress.Spec.Methods;
using TensorElementType = Microsoft.ML.OnnxRuntime.Tensors.TensorElementType;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Passes.Quantization;

/// <summary>
/// Static int8 quantization in QDQ form (algorithms.md §11): weights of Conv/Gemm/MatMul become int8 with a
/// symmetric per-channel (or per-tensor) scale behind DequantizeLinear; biases int32 with scale x_scale·w_scale;
/// every activation read or written by a selected op gets a QuantizeLinear→DequantizeLinear pair with a range
/// calibrated on the calibration data (MinMax, Percentile, Entropy/KL or MSE). ONNX Runtime fuses
/// DQ→op→Q groups into integer kernels (QLinearConv, QGemm, QLinearMatMul, …) when it loads the model.
/// Pass-through ops (MaxPool, Flatten, Reshape, …) share their input's parameters so the pairs around them cancel; a
/// layer output read only by a Relu gets its pair after the Relu only (<see cref="ReluFused"/>).
/// </summary>
[ImplementsMethod(RtnMethod.Name, GptqMethod.Name, Scheme = QuantizeSchemes.Static)]
public sealed class QdqQuantizer(QuantizeStep step) : ICompressionPass
{
    private static readonly HashSet<string> PassThrough = ["MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze"];

    public string Name => "quantize/static";

    public void Apply(CompressionContext context)
    {
        TorchRuntime.EnsureLoaded();
        var model = context.Model;
        if ((model.GetOpsetVersion("") ?? 1) < 11)
        {
            // ONNX Runtime's QDQ fusions produce QLinearConv & co. (opset 10+); older models are raised first.
            Graph.OpsetUpgrader.RaiseTo(model, 11);
            model.Graph.Refresh(); // the upgrader edits the proto directly
            context.Notes.Add("ai.onnx opset raised to 11 for the quantized kernels (Clip and Slice rewritten)");
        }

        var tables = EmbeddingTables.Quantize(context, step, 8);
        var graph = model.Graph;
        // Op types left to their defaults keep a transformer's LayerNorm, Softmax and GELU float (FloatIslands).
        var islands = step.DefaultOpTypes || step.Smoothing is not null ? FloatIslands.Find(graph) : null;
        if (step.Smoothing is { } alpha)
        {
            context.Progress($"smoothing: α {alpha}, LayerNorm outputs on {context.Calibration.Count} samples");
            context.Notes.AddRange(ActivationSmoothing.Apply(model, islands!, context.Calibration, alpha));
        }

        var floatNodes = step.DefaultOpTypes ? islands : null;
        context.Notes.AddRange(floatNodes?.Describe() ?? []);
        var nodes = graph.TopologicalOrder()
            .Where(n => string.IsNullOrEmpty(n.Domain) && n.OpType != "Gather" && step.OpTypes.Contains(n.OpType) && WeightSelection.Matches(n, step) && floatNodes?.Contains(n) != true)
            .ToList();
        var weights = new Dictionary<NodeProto, WeightUse>(ReferenceEqualityComparer.Instance);
        foreach (var use in WeightSelection.Select(graph, step))
        {
            weights[use.Node] = use;
        }

        var selected = new HashSet<NodeProto>(nodes, ReferenceEqualityComparer.Instance);
        var fused = ReluFused(graph, nodes, selected);
        var candidates = new List<string>();
        var seen = new HashSet<string>(fused);
        foreach (var node in nodes)
        {
            var weightIndex = weights.TryGetValue(node, out var use) ? use.InputIndex : -1;
            // Inputs always; outputs only when a selected op reads them (an output that feeds float ops only,
            // such as logits into Softmax, would lose precision for no integer kernel).
            var tensors = node.Input.Where((input, i) => i != weightIndex && !(weightIndex >= 0 && i == 2) && input.Length > 0 && graph.GetInitializer(input) is null)
                .Concat(node.Output.Where(o => o.Length > 0 && !graph.IsGraphOutput(o) && graph.GetConsumers(o).Any(selected.Contains)));
            foreach (var t in tensors.Where(seen.Add))
            {
                candidates.Add(t);
            }
        }

        var ranges = Calibrate(context, candidates);
        var unsigned = step.Activations == "uint8";
        var (qmin, qmax) = unsigned ? (0, 255) : (-128, 127);
        var parameters = new Dictionary<string, (float Scale, int Zero)>();
        foreach (var (tensor, range) in ranges)
        {
            var (lo, hi) = range.Range(step.Calibration, step.Percentile, 256);
            var scale = Math.Max((hi - lo) / 255f, 1e-8f);
            parameters[tensor] = (scale, (int)Math.Clamp(Math.Round(qmin - lo / scale), qmin, qmax));
        }

        if (step.MinActivationSqnrDb is { } minSqnr)
        {
            MeasureSqnr(context, ranges, parameters, qmin);
            var kept = parameters.Keys.Where(t => ranges[t].SqnrDb < minSqnr).ToList();
            foreach (var tensor in kept)
            {
                parameters.Remove(tensor);
            }

            if (kept.Count > 0)
            {
                context.Notes.Add($"static: {kept.Count} activations kept float32 (own SQNR under {minSqnr} dB): " +
                    string.Join(", ", kept.Take(8).Select(t => $"{t} ({ranges[t].SqnrDb:0.0} dB)")) + (kept.Count > 8 ? ", …" : ""));
            }
        }

        foreach (var node in nodes.Where(n => PassThrough.Contains(n.OpType)))
        {
            if (parameters.TryGetValue(node.Input[0], out var p) && node.Output.Count > 0 && parameters.ContainsKey(node.Output[0]))
            {
                parameters[node.Output[0]] = p;
            }
        }

        var layerOutputs = weights.Values.Select(u => u.Node.Output[0]).ToList();
        var floatMeans = step.BiasCorrection ? BiasCorrection.ChannelMeans(model, context.Calibration, layerOutputs) : null;
        var qdq = new QdqNodes(model);
        var biases = new List<CorrectableBias>();
        // GPTQ takes each layer's input from one sequential pass with the earlier layers' weights already on their grids.
        using (var sequential = MethodCatalog.Of(step) == GptqMethod.Descriptor ? context.Layerwise(GptqMethod.Name) : null)
        {
            foreach (var use in nodes.Where(weights.ContainsKey).Select(n => weights[n]))
            {
                if (context.Plan.For(step, use.Weight.Name).Bits == 32)
                {
                    context.Notes.Add($"static: '{use.NodeName}' weight kept float (allocated 32 bits)");
                    continue;
                }

                if (QuantizeWeight(context, qdq, use, parameters) is { } bias)
                {
                    biases.Add(bias);
                }
            }
        }

        var dequantized = new Dictionary<string, string>();
        var widened = 0;
        foreach (var tensor in candidates.Where(parameters.ContainsKey))
        {
            // ONNX Runtime turns an int8 pair into uint8 (zero point + 128, the same grid) for its x86 integer kernels
            // only when the pair has one reader; a pair read by several ops would stay int8 and every op reading it
            // would fall back to float (BERT-base-like encoder: 2.3× slower than float). Such pairs are written as uint8.
            // Ops left float (unselected, or in a float island) keep reading the float tensor.
            var (scale, zero) = parameters[tensor];
            var several = !unsigned && graph.GetConsumers(tensor).Count(selected.Contains) > 1;
            widened += several ? 1 : 0;
            dequantized[tensor] = several
                ? qdq.InsertPair(tensor, scale, zero + 128, unsigned: true, selected.Contains)
                : qdq.InsertPair(tensor, scale, zero, unsigned, selected.Contains);
        }

        if (fused.Count > 0)
        {
            context.Notes.Add($"static: {fused.Count} layer outputs read only by a Relu quantized after the Relu (no pair between them; ONNX Runtime fuses the Relu into the integer kernel): {string.Join(", ", fused.Take(8))}{(fused.Count > 8 ? ", …" : "")}");
        }

        if (widened > 0)
        {
            context.Notes.Add($"static: {widened} int8 activations read by several ops written as uint8 pairs (zero point + 128: the same grid), as ONNX Runtime's integer kernels take them");
        }

        if (floatMeans is not null)
        {
            foreach (var bias in biases)
            {
                bias.Observed = dequantized.GetValueOrDefault(bias.FloatOutput, bias.FloatOutput);
            }

            BiasCorrection.Apply(context, biases, floatMeans);
        }

        context.Progress($"quantize: static {step.Activations} activations ({step.Calibration}), {weights.Count} int8 weights, {parameters.Count} activation tensors" + EmbeddingTables.Describe(tables));
    }

    /// <summary>
    /// Outputs of selected Conv/Gemm/MatMul/Add nodes whose one reader is a selected Relu with a quantized output: they
    /// get no Q→DQ pair of their own. The pair after the Relu (zero point at the bottom of the grid) lets ONNX Runtime
    /// drop the Relu and fuse DQ→Conv→Q into one integer kernel; a pair between the two would leave a float Relu
    /// between a DequantizeLinear and a QuantizeLinear (Fashion CNN: 0.087 → 0.063 ms at batch 1, 2.9 → 1.8 ms at
    /// batch 32; algorithms.md §15) and round twice.
    /// </summary>
    private static List<string> ReluFused(OnnxGraph graph, List<NodeProto> nodes, HashSet<NodeProto> selected)
    {
        bool Quantized(string value) => !graph.IsGraphOutput(value) && graph.GetConsumers(value).Any(selected.Contains);
        return nodes.Where(n => n.OpType is "Conv" or "Gemm" or "MatMul" or "Add" && n.Output.Count == 1)
            .Select(n => n.Output[0])
            .Where(o => !graph.IsGraphOutput(o) && graph.GetConsumers(o) is [{ OpType: "Relu" } relu] && selected.Contains(relu) && Quantized(relu.Output[0]))
            .ToList();
    }

    private Dictionary<string, ActivationRange> Calibrate(CompressionContext context, List<string> tensors)
    {
        using (var runner = OrtModelRunner.Exposing(context.Model, tensors))
        {
            var ranges = new Dictionary<string, ActivationRange>();
            var data = context.Calibration;
            context.Progress($"calibrate: {data.Count} samples, {tensors.Count} activation tensors");
            runner.Run(data, 64, (_, _, outputs) =>
            {
                foreach (var (name, value) in outputs)
                {
                    if (value.IsTensor && value.GetTensorTypeAndShape().ElementDataType == TensorElementType.Float)
                    {
                        (ranges.TryGetValue(name, out var r) ? r : ranges[name] = new ActivationRange()).Observe(value.GetTensorDataAsSpan<float>());
                    }
                }
            }, tensors);

            if (step.Calibration != "minmax")
            {
                runner.Run(data, 64, (_, _, outputs) =>
                {
                    foreach (var (name, value) in outputs)
                    {
                        if (ranges.TryGetValue(name, out var r))
                        {
                            r.Accumulate(value.GetTensorDataAsSpan<float>());
                        }
                    }
                }, tensors);
            }

            return ranges;
        }
    }

    /// <summary>One more pass over the calibration data: each activation's own quantization error.</summary>
    private static void MeasureSqnr(CompressionContext context, Dictionary<string, ActivationRange> ranges, Dictionary<string, (float Scale, int Zero)> parameters, int qmin)
    {
        var names = parameters.Keys.ToList();
        using var runner = OrtModelRunner.Exposing(context.Model, names);
        runner.Run(context.Calibration, 64, (_, _, outputs) =>
        {
            foreach (var (name, value) in outputs)
            {
                var (scale, zero) = parameters[name];
                ranges[name].MeasureError(value.GetTensorDataAsSpan<float>(), (qmin - zero) * scale, scale);
            }
        }, names);
    }

    private CorrectableBias? QuantizeWeight(CompressionContext context, QdqNodes qdq, WeightUse use, Dictionary<string, (float Scale, int Zero)> activations)
    {
        var graph = context.Model.Graph;
        using var scope = NewDisposeScope();
        var w = context.Model.ToTorch(use.Weight);
        int? axis = step.Granularity == "channel" ? use.OutputAxis : null;

        // Bias of Conv/Gemm: int32 with scale x_scale·w_scale and zero point 0, as ONNX Runtime's fusions expect.
        // A channel with near-zero weights would get a scale so small that its bias overflows int32; such weight
        // scales are raised until the bias fits (with headroom), as ONNX Runtime's own quantizer does.
        var bias = use.Node.OpType is "Conv" or "Gemm" && use.Node.Input.Count > 2 ? graph.GetInitializer(use.Node.Input[2]) : null;
        var hasBias = bias is { Dims.Count: 1 } && bias.DataType == (int)TensorProto.Types.DataType.Float && activations.ContainsKey(use.Node.Input[0]);
        Tensor? b = hasBias ? context.Model.ToTorch(bias!) : null;
        var x = hasBias ? activations[use.Node.Input[0]] : default;
        Tensor? minScales = b is null ? null
            : axis is null ? (b.abs().max() / (x.Scale * (double)int.MaxValue * 0.5)).reshape(1)
            : b.abs() / (x.Scale * (double)int.MaxValue * 0.5);
        var (q, scales) = WeightQuantization.SymmetricInt8(w, axis, minScales);
        if (MethodCatalog.Of(step) == GptqMethod.Descriptor)
        {
            q = SecondOrder.Gptq.QuantizeInt8(context, use, w, scales, step);
        }

        var record = context.Layer(use.Weight.Name, use.NodeName, use.Node.OpType, w.numel());
        record.Format = new Plans.WeightFormat(Plans.WeightEncoding.QdqInt8, 8) { PerTensor = axis is null, Rounding = MethodCatalog.Of(step) == GptqMethod.Descriptor ? "GPTQ" : null };
        var onGrid = WeightQuantization.Dequantize(q, scales, axis);
        record.RelativeError += WeightQuantization.RelativeError(w, onGrid);
        context.Frontier?.SetWeight(use.Weight.Name, onGrid);
        var weightName = use.Weight.Name;
        var (dequantized, stored) = qdq.Dequantize(weightName, q, scales, zeros_like(scales, ScalarType.Int8), axis);
        use.Node.Input[use.InputIndex] = dequantized;
        record.Store(stored.Name);

        if (b is not null)
        {
            var biasScale = (scales * x.Scale).to_type(ScalarType.Float32);
            var bq = (b / biasScale).round().clamp(int.MinValue, int.MaxValue).to_type(ScalarType.Int32);
            var biasName = bias!.Name;
            var (output, quantizedBias) = qdq.Dequantize(biasName, bq, biasScale, zeros_like(biasScale, ScalarType.Int32), axis is null ? null : 0);
            use.Node.Input[2] = output;
            graph.RemoveInitializerIfUnused(biasName);
            graph.RemoveInitializerIfUnused(weightName);
            return new CorrectableBias(use.Node, use.Node.Output[0], quantizedBias, biasScale.data<float>().ToArray());
        }

        graph.RemoveInitializerIfUnused(weightName);

        // The input stays float, so the bias does too; it can still absorb the weights' output-mean shift.
        return bias is { Dims.Count: 1, HasRawData: true } && bias.DataType == (int)TensorProto.Types.DataType.Float && graph.GetConsumers(bias.Name).Count == 1
            ? new CorrectableBias(use.Node, use.Node.Output[0], bias, null)
            : null;
    }
}
