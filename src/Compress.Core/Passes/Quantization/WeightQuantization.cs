using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Passes.Quantization;

/// <summary>Round-to-nearest weight quantizers (TorchSharp, whole tensors at once).</summary>
public static class WeightQuantization
{
    /// <summary>
    /// Symmetric int8 along <paramref name="axis"/> (or per tensor when null): scale = max|w| / 127, raised to
    /// <paramref name="minScales"/> where given, q = clamp(round(w / scale), −127, 127), zero point 0.
    /// Returns q (int8) and the scales (float, one per channel).
    /// </summary>
    public static (Tensor Quantized, Tensor Scales) SymmetricInt8(Tensor weight, int? axis, Tensor? minScales = null)
    {
        var amax = axis is { } a ? weight.transpose(a, 0).reshape(weight.shape[a], -1).abs().amax([1]) : weight.abs().max().reshape(1);
        var scales = (amax / 127.0).clamp_min(1e-12);
        if (minScales is not null)
        {
            scales = maximum(scales, minScales);
        }

        var q = (weight / Broadcast(scales, weight, axis)).round().clamp(-127, 127).to_type(ScalarType.Int8);
        return (q, scales);
    }

    private static Tensor Broadcast(Tensor scales, Tensor like, int? axis)
    {
        if (axis is not { } a)
        {
            return scales;
        }

        var shape = Enumerable.Repeat(1L, (int)like.dim()).ToArray();
        shape[a] = like.shape[a];
        return scales.reshape(shape);
    }

    public static Tensor Dequantize(Tensor quantized, Tensor scales, int? axis, Tensor? zeroPoints = null)
    {
        var values = quantized.to_type(ScalarType.Float32);
        if (zeroPoints is not null)
        {
            values = values - zeroPoints.to_type(ScalarType.Float32);
        }

        if (axis is { } a)
        {
            var shape = Enumerable.Repeat(1L, (int)quantized.dim()).ToArray();
            shape[a] = quantized.shape[a];
            return values * scales.reshape(shape);
        }

        return values * scales;
    }

    /// <summary>‖Ŵ − W‖² / ‖W‖².</summary>
    public static double RelativeError(Tensor original, Tensor approximation)
    {
        var norm = original.square().sum().item<float>();
        return norm == 0 ? 0 : (original - approximation).square().sum().item<float>() / norm;
    }
}
