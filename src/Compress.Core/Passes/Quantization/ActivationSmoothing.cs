using System.Globalization;
using Compress.Core.Calibration;
using Compress.Core.Evaluation;
using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Torch;
using static TorchSharp.torch;

namespace Compress.Core.Passes.Quantization;

/// <summary>
/// SmoothQuant (algorithms.md §13): a LayerNorm's output channels with large activations make one int8 scale too coarse
/// for all the others, while the weights reading them are easy to quantize. Per channel j,
/// s_j = max|X_j|^α / max|W_j|^(1−α); the LayerNorm's γ and β are divided by s (so X becomes X / s) and the rows of
/// every MatMul/Gemm weight reading X are multiplied by s, which leaves X·W unchanged. A reader that is not such a
/// MatMul (the residual Add of a post-LN encoder) reads X back through a Mul by s, so the float model's function is
/// unchanged either way. Maxima of X come from the calibration data.
/// </summary>
public static class ActivationSmoothing
{
    /// <summary>Channel scales are kept within [1e-4, 1e4] (a dead channel or a zero weight row gets 1).</summary>
    private const double Limit = 1e4;

    /// <summary>A LayerNorm whose output can move its scales into the weights reading it.</summary>
    private sealed record Target(FloatIsland LayerNorm, TensorProto Gamma, TensorProto? Beta, List<(NodeProto Node, TensorProto Weight, int Axis)> Weights, List<NodeProto> Others);

    /// <summary>Smooths every LayerNorm of <paramref name="islands"/> it can; returns the report's notes.</summary>
    public static IReadOnlyList<string> Apply(OnnxModel model, FloatIslands islands, CalibrationSet data, double alpha)
    {
        var notes = new List<string>();
        var skipped = new List<string>();
        var targets = new List<Target>();
        foreach (var island in islands.Islands.Where(i => i.Kind == IslandKind.LayerNorm))
        {
            if (Plan(model.Graph, island, out var reason) is { } target)
            {
                targets.Add(target);
            }
            else
            {
                skipped.Add($"'{island.Output}' ({reason})");
            }
        }

        if (targets.Count == 0)
        {
            notes.Add($"smoothing: no LayerNorm output feeds a MatMul/Gemm weight it could move its scales into" + (skipped.Count > 0 ? $"; {string.Join(", ", skipped.Take(4))}" : ""));
            return notes;
        }

        var maxima = ChannelMaxima(model, data, targets.Select(t => t.LayerNorm.Output).ToList());
        using var scope = NewDisposeScope();
        var (smallest, largest) = (double.MaxValue, 0.0);
        foreach (var target in targets)
        {
            var x = tensor(maxima[target.LayerNorm.Output]).to(ScalarType.Float64);
            var w = target.Weights.Select(u => model.ToTorch(u.Weight).abs().amax(new long[] { 1 - u.Axis }).to(ScalarType.Float64)).Aggregate(maximum);
            var s = (x.pow(alpha) / w.pow(1 - alpha)).nan_to_num(1, 1, 1);
            s = where(x.le(0).logical_or(w.le(0)), ones_like(s), s).clamp(1 / Limit, Limit);
            smallest = Math.Min(smallest, s.min().item<double>());
            largest = Math.Max(largest, s.max().item<double>());
            Rescale(model, target.Gamma, 1 / s, 0);
            if (target.Beta is not null)
            {
                Rescale(model, target.Beta, 1 / s, 0);
            }

            foreach (var (_, weight, axis) in target.Weights)
            {
                Rescale(model, weight, s, axis);
            }

            if (target.Others.Count > 0)
            {
                islands.Join(target.LayerNorm, Restore(model.Graph, target, s));
            }
        }

        var weights = targets.Sum(t => t.Weights.Count);
        var restored = targets.Sum(t => t.Others.Count);
        notes.Add(string.Create(CultureInfo.InvariantCulture,
            $"smoothing (α {alpha}): {targets.Count} LayerNorm outputs moved their channel scales (s from {smallest:0.###} to {largest:0.###}) into {weights} MatMul/Gemm weights")
            + (restored > 0 ? $"; {restored} other readers (residual Adds) read the unscaled values through a Mul" : "")
            + (skipped.Count > 0 ? $"; {skipped.Count} skipped: {string.Join(", ", skipped.Take(4))}" + (skipped.Count > 4 ? ", …" : "") : ""));
        return notes;
    }

    private static Target? Plan(OnnxGraph graph, FloatIsland island, out string reason)
    {
        var gamma = island.Gamma is { } g ? graph.GetInitializer(g) : null;
        var beta = island.Beta is { } b ? graph.GetInitializer(b) : null;
        var channels = gamma is { Dims.Count: 1 } ? gamma.Dims[0] : -1;
        if (gamma is null || !IsFloat(gamma, channels) || (island.Beta is not null && (beta is null || !IsFloat(beta, channels))))
        {
            reason = "its scale and bias are not constant vectors";
            return null;
        }

        if (graph.GetConsumers(gamma.Name).Count != 1 || (beta is not null && graph.GetConsumers(beta.Name).Count != 1))
        {
            reason = "its scale or bias is shared with other nodes";
            return null;
        }

        if (graph.IsGraphOutput(island.Output))
        {
            reason = "it is a graph output";
            return null;
        }

        var weights = new List<(NodeProto, TensorProto, int)>();
        var others = new List<NodeProto>();
        foreach (var reader in graph.GetConsumers(island.Output))
        {
            if (WeightOf(graph, reader, island.Output, channels) is { } use)
            {
                weights.Add((reader, use.Weight, use.Axis));
            }
            else if (reader.OpType is not ("Shape" or "Size")) // these read the shape, which smoothing keeps
            {
                others.Add(reader);
            }
        }

        reason = "no MatMul/Gemm with a constant weight of its own reads it";
        return weights.Count > 0 ? new Target(island, gamma, beta, weights, others) : null;
    }

    /// <summary>The weight of a MatMul/Gemm reading <paramref name="input"/> as its data, and the weight's input-channel axis.</summary>
    private static (TensorProto Weight, int Axis)? WeightOf(OnnxGraph graph, NodeProto reader, string input, long channels)
    {
        var plain = reader.OpType == "MatMul" || (reader.OpType == "Gemm" && reader.Int("transA", 0) == 0);
        if (!plain || !string.IsNullOrEmpty(reader.Domain) || reader.Input.Count < 2 || reader.Input[0] != input || reader.Input[1] == input)
        {
            return null;
        }

        var weight = graph.GetInitializer(reader.Input[1]);
        var axis = reader.OpType == "Gemm" && reader.Int("transB", 0) == 1 ? 1 : 0;
        return weight is { Dims.Count: 2 } && weight.DataType == (int)TensorProto.Types.DataType.Float && weight.Dims[axis] == channels
            && graph.GetConsumers(weight.Name).Count == 1 ? (weight, axis) : null;
    }

    private static bool IsFloat(TensorProto tensor, long channels) =>
        tensor.DataType == (int)TensorProto.Types.DataType.Float && tensor.Dims.Count == 1 && tensor.Dims[0] == channels;

    /// <summary>Multiplies <paramref name="tensor"/> by <paramref name="factors"/> along <paramref name="axis"/>.</summary>
    private static void Rescale(OnnxModel model, TensorProto tensor, Tensor factors, int axis)
    {
        var values = model.ToTorch(tensor);
        var shape = Enumerable.Repeat(1L, (int)values.dim()).ToArray();
        shape[axis] = factors.shape[0];
        model.ReplaceData(tensor, (values.to(ScalarType.Float64) * factors.reshape(shape)).to(ScalarType.Float32).ToOnnx(tensor.Name));
    }

    /// <summary>Readers other than the weights' nodes get X back: Mul(X / s, s).</summary>
    private static NodeProto Restore(OnnxGraph graph, Target target, Tensor s)
    {
        var output = target.LayerNorm.Output;
        var factors = graph.AddInitializer(s.to(ScalarType.Float32).ToOnnx(graph.UniqueName(output + "_smoothing"))).Name;
        var restored = graph.UniqueName(output + "_unsmoothed");
        var mul = new NodeProto { OpType = "Mul", Name = graph.UniqueName(restored + "_node"), Input = { output, factors }, Output = { restored } };
        graph.InsertAfter(graph.GetProducer(output)!, mul);
        var others = target.Others.ToHashSet(ReferenceEqualityComparer.Instance);
        graph.RedirectConsumers(output, restored, except: mul, graphOutputs: false, only: others.Contains);
        return mul;
    }

    /// <summary>max |x| per channel (last axis) of each tensor, over the calibration data.</summary>
    private static Dictionary<string, float[]> ChannelMaxima(OnnxModel model, CalibrationSet data, List<string> tensors)
    {
        var maxima = new Dictionary<string, float[]>();
        using var runner = OrtModelRunner.Exposing(model, tensors);
        runner.Run(data, 64, (_, _, outputs) =>
        {
            foreach (var (name, value) in outputs)
            {
                var values = value.GetTensorDataAsSpan<float>();
                var channels = (int)value.GetTensorTypeAndShape().Shape[^1];
                var max = maxima.TryGetValue(name, out var m) ? m : maxima[name] = new float[channels];
                for (var i = 0; i < values.Length; i++)
                {
                    max[i % channels] = Math.Max(max[i % channels], Math.Abs(values[i]));
                }
            }
        }, tensors);
        return maxima;
    }
}
