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

    /// <summary>A batch's rows (im2col patches) take at most this much.</summary>
    private const long MaxBatchBytes = 32L << 20;

    /// <summary>From this many columns on, XᵀX is formed by blocks on and above the diagonal only (<see cref="Accumulate"/>).</summary>
    private const long WideColumns = 1024;

    private const long SymmetricBlock = 512;

    /// <summary>
    /// From this many columns on, the Hessian is held (and factored, <see cref="LayerObs"/>) in float32, as SparseGPT's
    /// reference implementation does throughout: half the memory and about twice the speed where float64 costs most.
    /// </summary>
    public const long SinglePrecisionColumns = 2048;

    public static Tensor Compute(CompressionContext context, WeightUse use)
    {
        var cols = LayerMatrix.Columns(use);
        var hessian = zeros([ConvGeometry.Of(use)?.Groups ?? 1, cols, cols], cols >= SinglePrecisionColumns ? ScalarType.Float32 : ScalarType.Float64);
        var rows = Stream(context, use, matrices => Accumulate(hessian, matrices));
        NoteRank(context, use, rows, cols);
        return hessian.mul_(2.0 / rows);
    }

    /// <summary>
    /// With fewer input rows than inputs, XᵀX has rank ≤ rows and the layer-wise solve leans on its damping along the
    /// missing directions. The report says so in one note for all such layers, each with its rows and inputs, and the
    /// calibration samples that would give the widest of them as many rows as inputs (a Conv sees a row per output
    /// position and sample, a sequence layer one per token). On the Fashion CNN at 95 % (obs), fc1 (1,568 inputs) gave
    /// 87.97 % from 512 images and 89.04 % from 2,048.
    /// </summary>
    public static void NoteRank(CompressionContext context, WeightUse use, long rows, long cols)
    {
        if (rows >= cols || !context.HasCalibration)
        {
            return;
        }

        if (context.RankDeficient.TryGetValue(use.NodeName, out var known) && known == (rows, cols))
        {
            return;
        }

        context.RankDeficient[use.NodeName] = (rows, cols);
        context.Progress($"{use.NodeName}: the layer-wise Hessian is rank-deficient ({rows:N0} calibration rows for {cols:N0} inputs)");
        var samples = Math.Max(1, context.Calibration.Count);
        var needed = context.RankDeficient.Values.Max(v => (long)Math.Ceiling(v.Cols * (double)samples / v.Rows));
        var layers = context.RankDeficient.Select(p => $"{p.Key} ({p.Value.Rows:N0} rows for {p.Value.Cols:N0} inputs)").ToList();
        var note = $"{RankNote} in {layers.Count} layer{(layers.Count == 1 ? "" : "s")}: {string.Join(", ", layers.Take(5))}{(layers.Count > 5 ? ", …" : "")}; " +
            $"the data-aware methods may do better with at least {needed:N0} calibration samples";
        var index = context.Notes.FindIndex(n => n.StartsWith(RankNote, StringComparison.Ordinal));
        if (index < 0)
        {
            context.Notes.Add(note);
        }
        else
        {
            context.Notes[index] = note;
        }
    }

    /// <summary>How the rank note starts (one note for every rank-deficient layer).</summary>
    public const string RankNote = "rank-deficient layer-wise Hessians (fewer calibration rows than inputs)";

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

        if (context.Frontier?.InputOf(node) is { } chunks)
        {
            // The frontier holds the input over all samples, a chunk at a time: im2col of a batch at a time keeps the copies small.
            foreach (var all in chunks)
            {
                // Batches of im2col rows of at most MaxBatchBytes (a wide early Conv has thousands of rows per sample).
                var perSample = Math.Max(1, all.numel() / Math.Max(1, all.shape[0]) * (geometry?.KernelArea ?? 1) * sizeof(float));
                var batch = node.OpType == "Gemm" && node.Int("transA", 0) == 1 ? all.shape[0] : Math.Clamp(MaxBatchBytes / perSample, 1, BatchSize);
                for (long start = 0; start < all.shape[0]; start += batch)
                {
                    Add(all.narrow(0, start, Math.Min(batch, all.shape[0] - start)));
                }
            }
        }
        else
        {
            using var runner = OrtModelRunner.Computing(context.Model, [input]);
            runner.Run(context.Calibration, BatchSize, (_, _, outputs) => Add(ToTorch(outputs[input])), [input]);
        }

        if (rows == 0)
        {
            throw new InvalidOperationException($"no calibration rows reached '{use.NodeName}'");
        }

        return rows;
    }

    /// <summary>
    /// hessian[g] += X[g]ᵀX[g] in the Hessian's precision for rows X [groups, n, cols] (float32). The product is a float32 GEMM; a wide
    /// layer's is formed by row strips from the diagonal on (about half the multiplications, the other half mirrored),
    /// each strip added on its own, so no float64 copy of the whole product is ever made (a 640-channel
    /// 3×3 Conv's Hessian is 5,760² — 265 MB in float64).
    /// </summary>
    private static void Accumulate(Tensor hessian, Tensor x)
    {
        var cols = x.shape[2];
        if (cols < WideColumns)
        {
            hessian.add_(x.transpose(1, 2).bmm(x).to_type(hessian.dtype));
            return;
        }

        for (long i = 0; i < cols; i += SymmetricBlock)
        {
            using var scope = NewDisposeScope();
            var size = Math.Min(SymmetricBlock, cols - i);
            var rest = cols - i;
            var strip = x.narrow(2, i, size).transpose(1, 2).bmm(x.narrow(2, i, rest)).to_type(hessian.dtype); // rows i…i+size, columns i…cols
            hessian.narrow(1, i, size).narrow(2, i, rest).add_(strip);
            if (rest > size)
            {
                hessian.narrow(1, i + size, rest - size).narrow(2, i, size).add_(strip.narrow(2, size, rest - size).transpose(1, 2));
            }
        }
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

    /// <summary>Kernel positions per output position (kh·kw).</summary>
    public long KernelArea => _kernel.Aggregate(1L, (a, b) => a * b);

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
