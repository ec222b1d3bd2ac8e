using Compress.Core.Onnx;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Execution;

/// <summary>Convolutions, pooling and normalisation: 1-D and 2-D, pads as ONNX gives them (begin…, end…).</summary>
public static partial class TorchOps
{
    private static Tensor[] Conv(OpCall c)
    {
        var (x, spatial) = ConvWindow.As2D(c.X);
        var w = spatial == 1 ? c.Inputs[1]!.unsqueeze(2) : c.Inputs[1]!;
        var kernel = w.shape.Skip(2).ToArray();
        var strides = ConvWindow.Pair(c.Node.Ints("strides"), spatial);
        var dilations = ConvWindow.Pair(c.Node.Ints("dilations"), spatial);
        x = ConvWindow.PadInput(c.Node, x, kernel, strides, dilations, spatial, 0);
        var y = nn.functional.conv2d(x, w, c.Input(2), strides, [0, 0], dilations, c.Node.Int("group", 1));
        return [spatial == 1 ? y.squeeze(2) : y];
    }

    private static Tensor[] ConvTranspose(OpCall c)
    {
        if (c.Node.Ints("output_shape") is not null || c.Node.String("auto_pad", "NOTSET") != "NOTSET")
        {
            throw c.Unsupported("'output_shape' or 'auto_pad'");
        }

        var (x, spatial) = ConvWindow.As2D(c.X);
        var w = spatial == 1 ? c.Inputs[1]!.unsqueeze(2) : c.Inputs[1]!;
        var pads = ConvWindow.Pads(c.Node.Ints("pads"), spatial);
        if (pads[0] != pads[2] || pads[1] != pads[3])
        {
            throw c.Unsupported("asymmetric 'pads'");
        }

        var y = nn.functional.conv_transpose2d(x, w, c.Input(2), ConvWindow.Pair(c.Node.Ints("strides"), spatial), [pads[0], pads[1]],
            ConvWindow.Pair(c.Node.Ints("output_padding"), spatial, 0), ConvWindow.Pair(c.Node.Ints("dilations"), spatial), c.Node.Int("group", 1));
        return [spatial == 1 ? y.squeeze(2) : y];
    }

    private static Tensor[] MaxPool(OpCall c)
    {
        if (c.Node.Int("storage_order", 0) != 0 || c.Node.Output.Count > 1 && c.Node.Output[1].Length > 0)
        {
            throw c.Unsupported("the Indices output or 'storage_order'");
        }

        var (x, spatial) = ConvWindow.As2D(c.X);
        var kernel = ConvWindow.Pair(c.Node.Ints("kernel_shape"), spatial);
        var strides = ConvWindow.Pair(c.Node.Ints("strides"), spatial);
        var dilations = ConvWindow.Pair(c.Node.Ints("dilations"), spatial);
        x = ConvWindow.PadInput(c.Node, x, kernel, strides, dilations, spatial, x.is_floating_point() ? double.NegativeInfinity : x.dtype == ScalarType.Byte ? 0 : x.min().item<long>());
        var y = nn.functional.max_pool2d(x, kernel, strides, [0, 0], dilations, ceil_mode: c.Node.Int("ceil_mode", 0) == 1);
        return [spatial == 1 ? y.squeeze(2) : y];
    }

    /// <summary>
    /// Sum over each window of the zero-padded input divided by the count of cells the window covers: input cells
    /// only (count_include_pad = 0) or input and pad cells (1); torch's divisor conventions cancel in the ratio.
    /// </summary>
    private static Tensor[] AveragePool(OpCall c)
    {
        var (x, spatial) = ConvWindow.As2D(c.X);
        var kernel = ConvWindow.Pair(c.Node.Ints("kernel_shape"), spatial);
        var strides = ConvWindow.Pair(c.Node.Ints("strides"), spatial);
        var dilations = ConvWindow.Pair(c.Node.Ints("dilations"), spatial);
        if (dilations.Any(v => v != 1))
        {
            throw c.Unsupported("'dilations'");
        }

        var ceil = c.Node.Int("ceil_mode", 0) == 1;
        var padded = ConvWindow.PadInput(c.Node, x, kernel, strides, dilations, spatial, 0);
        var cells = c.Node.Int("count_include_pad", 0) == 1 ? ones_like(padded) : ConvWindow.PadInput(c.Node, ones_like(x), kernel, strides, dilations, spatial, 0);
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
}
