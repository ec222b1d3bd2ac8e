using System.Runtime.InteropServices;
using Compress.Core.Calibration;
using Compress.Core.Evaluation;
using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Torch;
using Google.Protobuf;

namespace Compress.Core.Passes.Quantization;

/// <summary>
/// The bias of a layer with quantized weights: int32 behind DequantizeLinear (<see cref="Scales"/> given) or still
/// float32 (its input activation stays float). <see cref="Observed"/> is what downstream sees of the layer's output.
/// </summary>
internal sealed record CorrectableBias(NodeProto Node, string FloatOutput, TensorProto Bias, float[]? Scales)
{
    public string Observed { get; set; } = FloatOutput;
}

/// <summary>
/// Empirical bias correction (Nagel et al., 2019): quantization shifts the mean of each output channel; measured on
/// the calibration data against the float model, the shift is subtracted from the layer's bias (int32, or float32
/// where the layer's input stayed float). Layers are
/// corrected one at a time in graph order, each measured with the corrections before it in place: correcting all
/// layers from one measurement over-corrects downstream (PP-OCRv4 rec collapsed to 73% agreement that way).
/// The quantized means come from one sequential pass over the quantized graph in the TorchSharp executor: at each layer
/// the nodes up to its observed output run on scratch values, the bias is corrected, and the pass moves on with it
/// (algorithms.md §7); where the executor cannot run the graph, from one ONNX Runtime run per layer (noted).
/// </summary>
internal static class BiasCorrection
{
    /// <summary>Per-channel means (axis 1, or the only axis) of the given tensors over the data.</summary>
    public static Dictionary<string, double[]> ChannelMeans(OnnxModel model, CalibrationSet data, IReadOnlyList<string> tensors)
    {
        using var runner = OrtModelRunner.Exposing(model, tensors);
        var sums = new Dictionary<string, double[]>();
        var counts = new Dictionary<string, long>();
        runner.Run(data, 64, (_, _, outputs) =>
        {
            foreach (var (name, value) in outputs)
            {
                var shape = value.GetTensorTypeAndShape().Shape;
                var channels = shape.Length >= 2 ? (int)shape[1] : 1;
                var inner = shape.Length > 2 ? (int)shape.Skip(2).Aggregate(1L, (a, b) => a * b) : 1;
                var values = value.GetTensorDataAsSpan<float>();
                var sum = sums.TryGetValue(name, out var s) ? s : sums[name] = new double[channels];
                for (var offset = 0; offset < values.Length; offset += channels * inner)
                {
                    for (var c = 0; c < channels; c++)
                    {
                        sum[c] += System.Numerics.Tensors.TensorPrimitives.Sum(values.Slice(offset + c * inner, inner));
                    }
                }

                counts[name] = counts.GetValueOrDefault(name) + values.Length / channels;
            }
        }, tensors);

        return sums.ToDictionary(p => p.Key, p => p.Value.Select(v => v / counts[p.Key]).ToArray());
    }

    public static int Apply(CompressionContext context, IReadOnlyList<CorrectableBias> biases, Dictionary<string, double[]> floatMeans)
    {
        using var sequential = context.Layerwise("bias correction"); // notes it when ONNX Runtime measures instead
        var frontier = context.Frontier;

        var fallbacks = 0;
        foreach (var bias in biases)
        {
            double[] quantizedMeans;
            if (frontier?.Peek(bias.Observed) is { } chunks)
            {
                quantizedMeans = Means(chunks);
                chunks.ToList().ForEach(c => c.Dispose());
            }
            else
            {
                fallbacks += frontier is null ? 0 : 1;
                quantizedMeans = ChannelMeans(context.Model, context.Calibration, [bias.Observed])[bias.Observed];
            }

            var reference = floatMeans[bias.FloatOutput];
            if (bias.Scales is null)
            {
                var floats = MemoryMarshal.Cast<byte, float>(bias.Bias.RawData.Span).ToArray();
                for (var c = 0; c < floats.Length && c < reference.Length; c++)
                {
                    floats[c] -= (float)(quantizedMeans[c] - reference[c]);
                }

                bias.Bias.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(floats.AsSpan()));
                Moved(frontier, context, bias);
                continue;
            }

            var values = MemoryMarshal.Cast<byte, int>(bias.Bias.RawData.Span).ToArray();
            for (var c = 0; c < values.Length && c < reference.Length; c++)
            {
                var scale = bias.Scales.Length == 1 ? bias.Scales[0] : bias.Scales[c];
                values[c] = (int)Math.Clamp(values[c] - Math.Round((quantizedMeans[c] - reference[c]) / scale), int.MinValue, int.MaxValue);
            }

            bias.Bias.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values.AsSpan()));
            Moved(frontier, context, bias);
        }

        if (fallbacks > 0)
        {
            context.Notes.Add($"bias correction: {fallbacks} of {biases.Count} layers measured by ONNX Runtime ({(frontier!.Failure is null ? "their output lies behind the sequential pass" : "after the executor stopped")})");
        }

        context.Progress($"bias correction: {biases.Count} layers");
        return biases.Count;
    }

    /// <summary>The corrected bias into the sequential pass, which then moves past the layer's observed output.</summary>
    private static void Moved(Execution.LayerFrontier? frontier, CompressionContext context, CorrectableBias bias)
    {
        if (frontier is null)
        {
            return;
        }

        using (var corrected = context.Model.ToTorch(bias.Bias))
        {
            frontier.SetInitializer(bias.Bias.Name, corrected);
        }

        frontier.AdvancePast(bias.Observed);
    }

    /// <summary>Per-channel means (axis 1, or the only axis) over every chunk of a value, as <see cref="ChannelMeans"/> takes them.</summary>
    private static double[] Means(IReadOnlyList<TorchSharp.torch.Tensor> chunks)
    {
        using var scope = TorchSharp.torch.NewDisposeScope();
        var channels = chunks[0].dim() >= 2 ? chunks[0].shape[1] : 1;
        var sum = TorchSharp.torch.zeros(channels, TorchSharp.torch.ScalarType.Float64);
        long count = 0;
        foreach (var x in chunks)
        {
            var rows = x.dim() >= 2 ? x.transpose(0, 1).reshape(channels, -1) : x.reshape(1, -1);
            sum.add_(rows.to_type(TorchSharp.torch.ScalarType.Float64).sum(1));
            count += rows.shape[1];
        }

        return sum.div_(count).data<double>().ToArray();
    }
}
