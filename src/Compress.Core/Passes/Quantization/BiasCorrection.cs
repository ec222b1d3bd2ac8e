using System.Runtime.InteropServices;
using Compress.Core.Calibration;
using Compress.Core.Evaluation;
using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
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
/// One ONNX Runtime run per layer, so it is opt-in.
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
        foreach (var bias in biases)
        {
            var quantizedMeans = ChannelMeans(context.Model, context.Calibration, [bias.Observed])[bias.Observed];
            var reference = floatMeans[bias.FloatOutput];
            if (bias.Scales is null)
            {
                var floats = MemoryMarshal.Cast<byte, float>(bias.Bias.RawData.Span).ToArray();
                for (var c = 0; c < floats.Length && c < reference.Length; c++)
                {
                    floats[c] -= (float)(quantizedMeans[c] - reference[c]);
                }

                bias.Bias.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(floats.AsSpan()));
                continue;
            }

            var values = MemoryMarshal.Cast<byte, int>(bias.Bias.RawData.Span).ToArray();
            for (var c = 0; c < values.Length && c < reference.Length; c++)
            {
                var scale = bias.Scales.Length == 1 ? bias.Scales[0] : bias.Scales[c];
                values[c] = (int)Math.Clamp(values[c] - Math.Round((quantizedMeans[c] - reference[c]) / scale), int.MinValue, int.MaxValue);
            }

            bias.Bias.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values.AsSpan()));
        }

        context.Progress($"bias correction: {biases.Count} layers");
        return biases.Count;
    }
}
