using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Execution;

/// <summary>
/// The sliding-window geometry of ONNX Conv and pooling nodes on a 2-D view (1-D inputs get a height of 1): attribute
/// pairs, pads as ONNX gives them ([begin…, end…]) or from auto_pad, applied as explicit padding. Shared by the
/// executor and by im2col for the layer-wise Hessians.
/// </summary>
public static class ConvWindow
{
    /// <summary>[N, C, L] as [N, C, 1, L]; 2-D inputs as they are; others refused.</summary>
    public static (Tensor X, int Spatial) As2D(Tensor x) => x.dim() switch
    {
        3 => (x.unsqueeze(2), 1),
        4 => (x, 2),
        _ => throw new NotSupportedException($"the TorchSharp executor runs 1-D and 2-D convolutions and pools, not rank-{x.dim()} inputs"),
    };

    /// <summary>An attribute of the 2-D view: the node's values, <paramref name="fallback"/> when absent, height 1 (or 0 for pads-like values) for 1-D.</summary>
    public static long[] Pair(long[]? values, int spatial, long fallback = 1) =>
        values is null ? [fallback, fallback] : spatial == 1 ? [fallback == 0 ? 0 : 1, values[0]] : values;

    /// <summary>ONNX pads as [top, left, bottom, right] of the 2-D view.</summary>
    public static long[] Pads(long[]? pads, int spatial) =>
        pads is null ? new long[4] : spatial == 1 ? [0, pads[0], 0, pads[1]] : pads;

    /// <summary>The input padded explicitly (with <paramref name="value"/>), from pads or auto_pad.</summary>
    public static Tensor PadInput(NodeProto node, Tensor x, long[] kernel, long[] strides, long[] dilations, int spatial, double value)
    {
        var autoPad = node.String("auto_pad", "NOTSET");
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
            pads = autoPad == "VALID" ? new long[4] : Pads(node.Ints("pads"), spatial);
        }

        return pads.All(p => p == 0) ? x : nn.functional.pad(x, [pads[1], pads[3], pads[0], pads[2]], PaddingModes.Constant, value);
    }
}
