using System.Runtime.InteropServices;
using Compress.Core.Evaluation;
using Compress.Core.Onnx;
using Microsoft.ML.OnnxRuntime;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Passes.SecondOrder;

/// <summary>
/// The input Hessian of one linear layer, H = (2/n) Σ x xᵀ over the n input rows the layer sees on the calibration
/// samples (algorithms.md §4). The rows come from running the model as it is now (earlier layers already
/// compressed) in ONNX Runtime with the layer's input exposed, a batch at a time. Gemm/MatMul: one row per sample
/// (per position for batched MatMul inputs). Conv: im2col rows of C_in/group·kh·kw values, one Hessian per group.
/// The result is float64, shaped [groups, cols, cols].
/// </summary>
public static class LayerHessian
{
    private const int BatchSize = 64;

    public static Tensor Compute(CompressionContext context, WeightUse use)
    {
        var node = use.Node;
        var input = node.Input[0];
        var data = context.Calibration;
        var geometry = ConvGeometry.Of(use);
        using var runner = OrtModelRunner.Exposing(context.Model, [input]);
        var cols = LayerMatrix.Columns(use);
        var groups = geometry?.Groups ?? 1;
        var hessian = zeros([groups, cols, cols], ScalarType.Float64);
        long rows = 0;
        runner.Run(data, BatchSize, (_, _, outputs) =>
        {
            using var scope = NewDisposeScope();
            var x = ToTorch(outputs[input]);
            var matrices = geometry is null ? Rows(x, node) : geometry.Im2Col(x);
            rows += matrices.shape[1];
            hessian.add_(matrices.transpose(1, 2).bmm(matrices).to_type(ScalarType.Float64));
        }, [input]);

        if (rows == 0)
        {
            throw new InvalidOperationException($"no calibration rows reached '{use.NodeName}'");
        }

        return hessian.mul_(2.0 / rows);
    }

    /// <summary>[1, rows, K] from a Gemm/MatMul input.</summary>
    private static Tensor Rows(Tensor x, Onnx.Proto.NodeProto node)
    {
        if (node.OpType == "Gemm" && node.Int("transA", 0) == 1)
        {
            x = x.t();
        }

        return x.reshape(1, -1, x.shape[^1]);
    }

    /// <summary>A float32 TorchSharp copy of a float tensor output.</summary>
    public static Tensor ToTorch(OrtValue value)
    {
        var shape = value.GetTensorTypeAndShape().Shape;
        var result = empty(shape, ScalarType.Float32);
        MemoryMarshal.AsBytes(value.GetTensorDataAsSpan<float>()).CopyTo(result.bytes);
        return result;
    }
}

/// <summary>
/// The views of a weight the layer-wise methods work on: [rows = output channels, cols = inputs (·kh·kw)], and back.
/// </summary>
public static class LayerMatrix
{
    public static long Columns(WeightUse use) =>
        use.OutputAxis == 0 ? use.Weight.Dims.Skip(1).Aggregate(1L, (a, b) => a * b) : use.Weight.Dims[0];

    public static Tensor ToMatrix(Tensor weight, WeightUse use) =>
        use.OutputAxis == 0 ? weight.reshape(weight.shape[0], -1) : weight.t();

    public static Tensor FromMatrix(Tensor matrix, WeightUse use) =>
        use.OutputAxis == 0 ? matrix.reshape(use.Weight.Dims.ToArray()).contiguous() : matrix.t().contiguous();
}

/// <summary>A 1-D or 2-D Conv's im2col: kernel, strides, dilations, pads (auto_pad resolved) and groups.</summary>
internal sealed class ConvGeometry
{
    private ConvGeometry(long[] kernel, long[] strides, long[] dilations, Onnx.Proto.NodeProto node, long groups)
    {
        Kernel = kernel;
        Strides = strides;
        Dilations = dilations;
        Node = node;
        Groups = groups;
    }

    public long[] Kernel { get; }

    public long[] Strides { get; }

    public long[] Dilations { get; }

    public Onnx.Proto.NodeProto Node { get; }

    public long Groups { get; }

    public static ConvGeometry? Of(WeightUse use)
    {
        var node = use.Node;
        if (node.OpType != "Conv")
        {
            return null;
        }

        var spatial = use.Weight.Dims.Count - 2;
        if (spatial is < 1 or > 2)
        {
            throw new NotSupportedException($"'{use.NodeName}' is a {spatial}-D convolution; the layer-wise methods take 1-D and 2-D Conv");
        }

        var kernel = use.Weight.Dims.Skip(2).ToArray();
        return new ConvGeometry(kernel, node.Ints("strides") ?? Ones(spatial), node.Ints("dilations") ?? Ones(spatial), node, node.Int("group", 1));
    }

    /// <summary>[groups, N·L, C/groups·kh·kw] patches of an input [N, C, (H,) W].</summary>
    public Tensor Im2Col(Tensor x)
    {
        if (Kernel.Length == 1)
        {
            x = x.unsqueeze(2);
        }

        var kernel = Kernel.Length == 1 ? new[] { 1L, Kernel[0] } : Kernel;
        var strides = Strides.Length == 1 ? new[] { 1L, Strides[0] } : Strides;
        var dilations = Dilations.Length == 1 ? new[] { 1L, Dilations[0] } : Dilations;
        var pads = Pads(x, kernel, strides, dilations);
        x = nn.functional.pad(x, [pads[1], pads[3], pads[0], pads[2]]);
        var patches = nn.functional.unfold(x, (kernel[0], kernel[1]), (dilations[0], dilations[1]), (0, 0), (strides[0], strides[1])); // [N, C·k, L]
        var n = x.shape[0];
        var perGroup = patches.shape[1] / Groups;
        return patches.reshape(n, Groups, perGroup, -1).permute(1, 0, 3, 2).reshape(Groups, -1, perGroup);
    }

    /// <summary>Begin/end pads as [top, left, bottom, right], from pads or auto_pad.</summary>
    private long[] Pads(Tensor x, long[] kernel, long[] strides, long[] dilations)
    {
        var autoPad = Node.String("auto_pad", "NOTSET");
        if (autoPad is "SAME_UPPER" or "SAME_LOWER")
        {
            var result = new long[4];
            for (var i = 0; i < 2; i++)
            {
                var size = x.shape[2 + i];
                var output = (size + strides[i] - 1) / strides[i];
                var total = Math.Max(0, (output - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - size);
                var small = total / 2;
                result[i] = autoPad == "SAME_UPPER" ? small : total - small;
                result[i + 2] = total - result[i];
            }

            return result;
        }

        var pads = autoPad == "VALID" ? null : Node.Ints("pads");
        return pads is null ? new long[4] : pads.Length == 2 ? [0, pads[0], 0, pads[1]] : pads;
    }

    private static long[] Ones(int count) => Enumerable.Repeat(1L, count).ToArray();
}
