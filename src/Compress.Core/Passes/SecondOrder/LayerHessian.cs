using System.Runtime.InteropServices;
using Compress.Core.Evaluation;
using Compress.Core.Execution;
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
        var cols = LayerMatrix.Columns(use);
        var hessian = zeros([ConvGeometry.Of(use)?.Groups ?? 1, cols, cols], ScalarType.Float64);
        var rows = Stream(context, use, matrices => hessian.add_(matrices.transpose(1, 2).bmm(matrices).to_type(ScalarType.Float64)));
        return hessian.mul_(2.0 / rows);
    }

    /// <summary>
    /// Σ x_j² over the layer's input rows, [groups, cols] float64: the diagonal of XᵀX alone, without the cols² matrix
    /// (Wanda's ‖X_j‖², algorithms.md §12).
    /// </summary>
    public static Tensor InputSquares(CompressionContext context, WeightUse use)
    {
        var squares = zeros([ConvGeometry.Of(use)?.Groups ?? 1, LayerMatrix.Columns(use)], ScalarType.Float64);
        Stream(context, use, matrices => squares.add_(matrices.square().sum(1, type: ScalarType.Float64)));
        return squares;
    }

    /// <summary>
    /// The layer's input rows on the calibration samples, a batch at a time, handed to <paramref name="add"/> as
    /// [groups, rows, cols] (inside a dispose scope per batch); returns how many rows there were.
    /// </summary>
    public static long Stream(CompressionContext context, WeightUse use, Action<Tensor> add)
    {
        var node = use.Node;
        var input = node.Input[0];
        var geometry = ConvGeometry.Of(use);
        long rows = 0;
        void Add(Tensor x)
        {
            using var scope = NewDisposeScope();
            var matrices = geometry is null ? Rows(x, node) : geometry.Im2Col(x);
            rows += matrices.shape[1];
            add(matrices);
        }

        if (context.Frontier?.InputOf(node) is { } all)
        {
            // The frontier holds the input over all samples: im2col of a batch at a time keeps the copies small.
            var batch = node.OpType == "Gemm" && node.Int("transA", 0) == 1 ? all.shape[0] : BatchSize;
            for (long start = 0; start < all.shape[0]; start += batch)
            {
                Add(all.narrow(0, start, Math.Min(batch, all.shape[0] - start)));
            }
        }
        else
        {
            using var runner = OrtModelRunner.Exposing(context.Model, [input]);
            runner.Run(context.Calibration, BatchSize, (_, _, outputs) => Add(ToTorch(outputs[input])), [input]);
        }

        if (rows == 0)
        {
            throw new InvalidOperationException($"no calibration rows reached '{use.NodeName}'");
        }

        return rows;
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

/// <summary>A 1-D or 2-D Conv's im2col, its window geometry read by <see cref="ConvWindow"/> as the executor reads it.</summary>
internal sealed class ConvGeometry
{
    private readonly long[] _kernel;
    private readonly Onnx.Proto.NodeProto _node;

    private ConvGeometry(long[] kernel, Onnx.Proto.NodeProto node)
    {
        _kernel = kernel;
        _node = node;
        Groups = node.Int("group", 1);
    }

    public long Groups { get; }

    public static ConvGeometry? Of(WeightUse use)
    {
        if (use.Node.OpType != "Conv")
        {
            return null;
        }

        var spatial = use.Weight.Dims.Count - 2;
        if (spatial is < 1 or > 2)
        {
            throw new NotSupportedException($"'{use.NodeName}' is a {spatial}-D convolution; the layer-wise methods take 1-D and 2-D Conv");
        }

        return new ConvGeometry(use.Weight.Dims.Skip(2).ToArray(), use.Node);
    }

    /// <summary>[groups, N·L, C/groups·kh·kw] patches of an input [N, C, (H,) W].</summary>
    public Tensor Im2Col(Tensor x)
    {
        var (view, spatial) = ConvWindow.As2D(x);
        var kernel = ConvWindow.Pair(_kernel, spatial);
        var strides = ConvWindow.Pair(_node.Ints("strides"), spatial);
        var dilations = ConvWindow.Pair(_node.Ints("dilations"), spatial);
        view = ConvWindow.PadInput(_node, view, kernel, strides, dilations, spatial, 0);
        var patches = nn.functional.unfold(view, (kernel[0], kernel[1]), (dilations[0], dilations[1]), (0, 0), (strides[0], strides[1])); // [N, C·k, L]
        var n = view.shape[0];
        var perGroup = patches.shape[1] / Groups;
        return patches.reshape(n, Groups, perGroup, -1).permute(1, 0, 3, 2).reshape(Groups, -1, perGroup);
    }
}
