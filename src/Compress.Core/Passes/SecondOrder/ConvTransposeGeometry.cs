using Compress.Core.Execution;
using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Passes.SecondOrder;

/// <summary>
/// A 1-D or 2-D ConvTranspose (group 1) as the Conv it equals (algorithms.md §14): the input X spread out by the stride
/// (s − 1 zeros between its pixels), padded by d·(k − 1) − pads at each end (output_padding more at the end; a
/// negative pad crops) and read by a stride-1 Conv with dilation d whose weight is W' [C_out, C_in, k] =
/// W [C_in, C_out, k] with the kernel flipped. Each output pixel q is then y_q = W' z_q + b with z_q its im2col patch,
/// so these rows reproduce the op exactly whatever the stride, kernel or padding (the adjoint of a Conv, col2im,
/// written as a Conv), and a consumer's least-squares fit over output pixels is the same fit as a Conv's. With stride = kernel and no padding each patch holds one input pixel
/// at one kernel position. output_shape and auto_pad SAME_* set the pads from the input size; they are not followed.
/// </summary>
internal sealed class ConvTransposeGeometry
{
    private readonly long[] _kernel;
    private readonly NodeProto _node;
    private readonly long[] _weightDims;

    private ConvTransposeGeometry(NodeProto node, long[] weightDims)
    {
        _node = node;
        _weightDims = weightDims;
        _kernel = weightDims.Skip(2).ToArray();
    }

    /// <summary>Kernel positions per output position (kh·kw).</summary>
    public long KernelArea => _kernel.Aggregate(1L, (a, b) => a * b);

    /// <summary>Output positions per input position (the strides' product): the patches are this many times the input's pixels.</summary>
    public long StrideArea => (_node.Ints("strides") ?? []).Aggregate(1L, (a, b) => a * b);

    /// <summary>Why the engine does not read <paramref name="node"/>'s input channels as a consumer, or null when it does.</summary>
    public static string? Unsupported(NodeProto node, TensorProto weight)
    {
        var group = node.Int("group", 1);
        if (group != 1)
        {
            return $"is a grouped ConvTranspose (group {group}): its input channels are not cut";
        }

        if (weight.Dims.Count is < 3 or > 4)
        {
            return $"is a {weight.Dims.Count - 2}-D ConvTranspose: 1-D and 2-D are followed";
        }

        if (node.Ints("output_shape") is not null || node.String("auto_pad", "NOTSET") is not ("NOTSET" or "VALID"))
        {
            return "sets its output size by output_shape or auto_pad SAME_*, whose padding the refit does not follow";
        }

        return null;
    }

    /// <summary>The geometry of a ConvTranspose the engine follows (<see cref="Unsupported"/> null).</summary>
    public static ConvTransposeGeometry Of(NodeProto node, TensorProto weight)
    {
        if (Unsupported(node, weight) is { } why)
        {
            throw new NotSupportedException($"'{OnnxGraph.Describe(node)}' {why}");
        }

        return new ConvTransposeGeometry(node, [.. weight.Dims]);
    }

    /// <summary>W [C_in, C_out, k…] as the equivalent Conv's [C_out, C_in·k]: the kernel flipped, the channel axes swapped.</summary>
    public Tensor ToMatrix(Tensor weight)
    {
        var spatial = Enumerable.Range(2, _kernel.Length).Select(a => (long)a).ToArray();
        return weight.flip(spatial).transpose(0, 1).reshape(_weightDims[1], -1);
    }

    /// <summary>The inverse of <see cref="ToMatrix"/>: [C_out, C_in·k] back to W [C_in, C_out, k…].</summary>
    public Tensor FromMatrix(Tensor matrix)
    {
        var spatial = Enumerable.Range(2, _kernel.Length).Select(a => (long)a).ToArray();
        return matrix.reshape([_weightDims[1], _weightDims[0], .. _kernel]).transpose(0, 1).flip(spatial).contiguous();
    }

    /// <summary>[N·L_out, C_in·kh·kw]: the patch each output position reads in the spread, padded input.</summary>
    public Tensor Rows(Tensor x)
    {
        var (view, spatial) = ConvWindow.As2D(x);
        var kernel = ConvWindow.Pair(_kernel, spatial);
        var strides = ConvWindow.Pair(_node.Ints("strides"), spatial);
        var dilations = ConvWindow.Pair(_node.Ints("dilations"), spatial);
        var outputPadding = ConvWindow.Pair(_node.Ints("output_padding"), spatial, 0);
        var pads = _node.String("auto_pad", "NOTSET") == "VALID" ? new long[4] : ConvWindow.Pads(_node.Ints("pads"), spatial);
        var (n, c, h, w) = (view.shape[0], view.shape[1], view.shape[2], view.shape[3]);

        // Spread: x at every stride-th position of a zero grid [(h − 1)·s_h + 1, (w − 1)·s_w + 1].
        var grid = zeros([n, c, h, strides[0], w, strides[1]], view.dtype);
        grid.select(5, 0).select(3, 0).copy_(view);
        var spread = grid.reshape(n, c, h * strides[0], w * strides[1]).narrow(2, 0, (h - 1) * strides[0] + 1).narrow(3, 0, (w - 1) * strides[1] + 1);

        var padded = spread;
        for (var axis = 0; axis < 2; axis++)
        {
            var reach = dilations[axis] * (kernel[axis] - 1);
            padded = Pad(padded, 2 + axis, reach - pads[axis], reach - pads[axis + 2] + outputPadding[axis]);
        }

        var patches = nn.functional.unfold(padded, (kernel[0], kernel[1]), (dilations[0], dilations[1]), (0, 0), (1, 1)); // [N, C·k, L]
        return patches.permute(0, 2, 1).reshape(-1, patches.shape[1]);
    }

    /// <summary><paramref name="x"/> with <paramref name="before"/> and <paramref name="after"/> zeros on <paramref name="axis"/>; a negative count crops.</summary>
    private static Tensor Pad(Tensor x, int axis, long before, long after)
    {
        if (before < 0)
        {
            x = x.narrow(axis, -before, x.shape[axis] + before);
        }

        if (after < 0)
        {
            x = x.narrow(axis, 0, x.shape[axis] + after);
        }

        var (b, a) = (Math.Max(0, before), Math.Max(0, after));
        if (b == 0 && a == 0)
        {
            return x;
        }

        var shape = x.shape.ToArray();
        var result = zeros([.. shape.Take(axis), shape[axis] + b + a, .. shape.Skip(axis + 1)], x.dtype);
        result.narrow(axis, b, shape[axis]).copy_(x);
        return result;
    }
}
