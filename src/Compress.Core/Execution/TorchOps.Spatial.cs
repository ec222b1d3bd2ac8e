using Compress.Core.Onnx;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Execution;

/// <summary>Convolutions, pooling and normalisation: 1-D and 2-D, pads as ONNX gives them (begin…, end…).</summary>
public static partial class TorchOps
{
    private static Tensor[] Conv(OpCall c)
    {
        var (x, spatial) = As2D(c.X);
        var w = spatial == 1 ? c.Inputs[1]!.unsqueeze(2) : c.Inputs[1]!;
        var kernel = w.shape.Skip(2).ToArray();
        var strides = Pair(c.Node.Ints("strides"), spatial);
        var dilations = Pair(c.Node.Ints("dilations"), spatial);
        x = PadInput(c, x, kernel, strides, dilations, spatial, 0);
        var y = nn.functional.conv2d(x, w, c.Input(2), strides, [0, 0], dilations, c.Node.Int("group", 1));
        return [spatial == 1 ? y.squeeze(2) : y];
    }

    private static Tensor[] ConvTranspose(OpCall c)
    {
        if (c.Node.Ints("output_shape") is not null || c.Node.String("auto_pad", "NOTSET") != "NOTSET")
        {
            throw c.Unsupported("'output_shape' or 'auto_pad'");
        }

        var (x, spatial) = As2D(c.X);
        var w = spatial == 1 ? c.Inputs[1]!.unsqueeze(2) : c.Inputs[1]!;
        var pads = Pads(c.Node.Ints("pads"), spatial);
        if (pads[0] != pads[2] || pads[1] != pads[3])
        {
            throw c.Unsupported("asymmetric 'pads'");
        }

        var y = nn.functional.conv_transpose2d(x, w, c.Input(2), Pair(c.Node.Ints("strides"), spatial), [pads[0], pads[1]],
            Pair(c.Node.Ints("output_padding"), spatial, 0), Pair(c.Node.Ints("dilations"), spatial), c.Node.Int("group", 1));
        return [spatial == 1 ? y.squeeze(2) : y];
    }

    private static Tensor[] MaxPool(OpCall c)
    {
        if (c.Node.Int("storage_order", 0) != 0 || c.Node.Output.Count > 1 && c.Node.Output[1].Length > 0)
        {
            throw c.Unsupported("the Indices output or 'storage_order'");
        }

        var (x, spatial) = As2D(c.X);
        var kernel = Pair(c.Node.Ints("kernel_shape"), spatial);
        var strides = Pair(c.Node.Ints("strides"), spatial);
        var dilations = Pair(c.Node.Ints("dilations"), spatial);
        x = PadInput(c, x, kernel, strides, dilations, spatial, x.is_floating_point() ? double.NegativeInfinity : x.dtype == ScalarType.Byte ? 0 : x.min().item<long>());
        var y = nn.functional.max_pool2d(x, kernel, strides, [0, 0], dilations, ceil_mode: c.Node.Int("ceil_mode", 0) == 1);
        return [spatial == 1 ? y.squeeze(2) : y];
    }

    /// <summary>
    /// Sum over each window of the zero-padded input divided by the count of cells the window covers: input cells
    /// only (count_include_pad = 0) or input and pad cells (1); torch's divisor conventions cancel in the ratio.
    /// </summary>
    private static Tensor[] AveragePool(OpCall c)
    {
        var (x, spatial) = As2D(c.X);
        var kernel = Pair(c.Node.Ints("kernel_shape"), spatial);
        var strides = Pair(c.Node.Ints("strides"), spatial);
        var dilations = Pair(c.Node.Ints("dilations"), spatial);
        if (dilations.Any(v => v != 1))
        {
            throw c.Unsupported("'dilations'");
        }

        var ceil = c.Node.Int("ceil_mode", 0) == 1;
        var padded = PadInput(c, x, kernel, strides, dilations, spatial, 0);
        var cells = c.Node.Int("count_include_pad", 0) == 1 ? ones_like(padded) : PadInput(c, ones_like(x), kernel, strides, dilations, spatial, 0);
        var sum = nn.functional.avg_pool2d(padded, kernel, strides, [0, 0], ceil, true);
        var count = nn.functional.avg_pool2d(cells, kernel, strides, [0, 0], ceil, true);
        var y = sum / count;
        return [spatial == 1 ? y.squeeze(2) : y];
    }

    private static Tensor[] BatchNormalization(OpCall c)
    {
        if (c.Node.Int("training_mode", 0) != 0)
        {
            throw c.Unsupported("training_mode = 1");
        }

        var shape = new long[c.X.dim()];
        Array.Fill(shape, 1L);
        shape[1] = -1;
        var (scale, bias, mean, variance) = (c.Inputs[1]!.reshape(shape), c.Inputs[2]!.reshape(shape), c.Inputs[3]!.reshape(shape), c.Inputs[4]!.reshape(shape));
        return [(c.X - mean) / (variance + c.Node.Float("epsilon", 1e-5f)).sqrt() * scale + bias];
    }

    private static Tensor[] LayerNormalization(OpCall c)
    {
        var axis = Axis(c.Node.Int("axis", -1), c.X);
        var dims = Enumerable.Range((int)axis, (int)(c.X.dim() - axis)).Select(i => (long)i).ToArray();
        var mean = c.X.mean(dims, keepdim: true);
        var centred = c.X - mean;
        var inverse = (centred.square().mean(dims, keepdim: true) + c.Node.Float("epsilon", 1e-5f)).rsqrt();
        var y = centred * inverse * c.Inputs[1]!;
        return [c.Input(2) is { } bias ? y + bias : y, mean, inverse];
    }

    /// <summary>[N, C, L] as [N, C, 1, L]; 2-D inputs as they are; others refused.</summary>
    private static (Tensor X, int Spatial) As2D(Tensor x) => x.dim() switch
    {
        3 => (x.unsqueeze(2), 1),
        4 => (x, 2),
        _ => throw new NotSupportedException($"the TorchSharp executor runs 1-D and 2-D convolutions and pools, not rank-{x.dim()} inputs"),
    };

    private static long[] Pair(long[]? values, int spatial, long fallback = 1) =>
        values is null ? [fallback, fallback] : spatial == 1 ? [fallback == 0 ? 0 : 1, values[0]] : values;

    /// <summary>ONNX pads as [top, left, bottom, right] of the 2-D view.</summary>
    private static long[] Pads(long[]? pads, int spatial) =>
        pads is null ? new long[4] : spatial == 1 ? [0, pads[0], 0, pads[1]] : pads;

    /// <summary>The input padded explicitly (with <paramref name="value"/>), from pads or auto_pad.</summary>
    private static Tensor PadInput(OpCall c, Tensor x, long[] kernel, long[] strides, long[] dilations, int spatial, double value)
    {
        var autoPad = c.Node.String("auto_pad", "NOTSET");
        long[] pads;
        if (autoPad is "SAME_UPPER" or "SAME_LOWER")
        {
            pads = new long[4];
            for (var i = 0; i < 2; i++)
            {
                var size = x.shape[2 + i];
                var output = (size + strides[i] - 1) / strides[i];
                var total = Math.Max(0, (output - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - size);
                pads[i] = autoPad == "SAME_UPPER" ? total / 2 : total - total / 2;
                pads[i + 2] = total - pads[i];
            }
        }
        else
        {
            pads = autoPad == "VALID" ? new long[4] : Pads(c.Node.Ints("pads"), spatial);
        }

        return pads.All(p => p == 0) ? x : nn.functional.pad(x, [pads[1], pads[3], pads[0], pads[2]], PaddingModes.Constant, value);
    }
}
