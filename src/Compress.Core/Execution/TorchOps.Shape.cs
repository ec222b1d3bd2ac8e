using Compress.Core.Onnx;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Execution;

/// <summary>Shape and indexing operators: their shape arguments are small int64 tensors read on the host.</summary>
public static partial class TorchOps
{
    private static Tensor[] Reshape(OpCall c)
    {
        var shape = c.Longs(1)!;
        var allowZero = c.Node.Int("allowzero", 0) == 1;
        for (var i = 0; i < shape.Length; i++)
        {
            if (shape[i] == 0 && !allowZero)
            {
                shape[i] = c.X.shape[i];
            }
        }

        return [c.X.reshape(shape)];
    }

    private static Tensor[] Shape(OpCall c)
    {
        var rank = c.X.dim();
        var start = Math.Clamp(Axis(c.Node.Int("start", 0), c.X), 0, rank);
        var end = Math.Clamp(c.Node.Int("end", rank) is var e && e < 0 ? e + rank : e, 0, rank);
        return [tensor(c.X.shape.Skip((int)start).Take((int)Math.Max(0, end - start)).ToArray(), ScalarType.Int64)];
    }

    private static Tensor[] Gather(OpCall c)
    {
        var axis = Axis(c.Node.Int("axis", 0), c.X);
        var indices = c.Inputs[1]!.to_type(ScalarType.Int64);
        indices = where(indices.lt(0), indices + c.X.shape[axis], indices);
        var picked = c.X.index_select(axis, indices.flatten());
        long[] shape = [.. c.X.shape.Take((int)axis), .. indices.shape, .. c.X.shape.Skip((int)axis + 1)];
        return [picked.reshape(shape)];
    }

    private static Tensor[] Unsqueeze(OpCall c)
    {
        var axes = c.Opset >= 13 ? c.Longs(1)! : c.Node.Ints("axes")!;
        var rank = c.X.dim() + axes.Length;
        var x = c.X;
        foreach (var axis in axes.Select(a => a < 0 ? a + rank : a).Order())
        {
            x = x.unsqueeze(axis);
        }

        return [x];
    }

    /// <summary>
    /// Split: sizes from the second input (opset 13+) or the <c>split</c> attribute (before); with neither, one part per
    /// output, equal, the last smaller when the axis does not divide (opset 18's <c>num_outputs</c>).
    /// </summary>
    private static Tensor[] Split(OpCall c)
    {
        var axis = Axis(c.Node.Int("axis", 0), c.X);
        var length = c.X.shape[axis];
        var sizes = (c.Opset >= 13 ? c.Longs(1) : c.Node.Ints("split"))?.ToArray();
        if (sizes is null || sizes.Length == 0)
        {
            var parts = c.Node.Output.Count;
            var size = (length + parts - 1) / parts;
            sizes = Enumerable.Range(0, parts).Select(i => Math.Max(0, Math.Min(size, length - i * size))).ToArray();
        }

        if (sizes.Sum() != length)
        {
            throw new ArgumentException($"Split '{c.Node.Name}': sizes {string.Join(", ", sizes)} do not add up to the axis' {length}");
        }

        return c.X.split(sizes, axis);
    }

    private static Tensor[] Squeeze(OpCall c)
    {
        var axes = c.Opset >= 13 ? c.Longs(1) : c.Node.Ints("axes");
        if (axes is null)
        {
            return [c.X.squeeze()];
        }

        var x = c.X;
        foreach (var axis in axes.Select(a => Axis(a, c.X)).OrderDescending())
        {
            x = x.squeeze(axis);
        }

        return [x];
    }

    private static Tensor[] ReduceMean(OpCall c)
    {
        var axes = c.Opset >= 18 ? c.Longs(1) : c.Node.Ints("axes");
        var keep = c.Node.Int("keepdims", 1) == 1;
        if (axes is null || axes.Length == 0)
        {
            if (c.Node.Int("noop_with_empty_axes", 0) == 1)
            {
                return [c.X.alias()];
            }

            axes = Enumerable.Range(0, (int)c.X.dim()).Select(i => (long)i).ToArray();
        }

        return [c.X.mean(axes.Select(a => Axis(a, c.X)).ToArray(), keepdim: keep)];
    }

    private static Tensor[] Slice(OpCall c)
    {
        long[] starts, ends;
        long[]? axes, steps;
        if (c.Opset < 10)
        {
            (starts, ends, axes, steps) = (c.Node.Ints("starts")!, c.Node.Ints("ends")!, c.Node.Ints("axes"), null);
        }
        else
        {
            (starts, ends, axes, steps) = (c.Longs(1)!, c.Longs(2)!, c.Longs(3), c.Longs(4));
        }

        var x = c.X;
        for (var i = 0; i < starts.Length; i++)
        {
            var axis = axes is null ? i : Axis(axes[i], x);
            var size = x.shape[axis];
            var step = steps?[i] ?? 1;
            long Normalize(long v) => v < 0 ? v + size : v;
            long start, end;
            if (step > 0)
            {
                start = Math.Clamp(Normalize(starts[i]), 0, size);
                end = Math.Clamp(Normalize(ends[i]), 0, size);
            }
            else
            {
                start = Math.Clamp(Normalize(starts[i]), 0, size - 1);
                end = Math.Clamp(Normalize(ends[i]), -1, size - 1);
            }

            x = step == 1 ? x.narrow(axis, start, Math.Max(0, end - start)) : x.index_select(axis, arange(start, end, step, ScalarType.Int64));
        }

        return [x];
    }

    /// <summary>
    /// Resize (opsets 10–19), modes nearest and linear, separable per axis with the ONNX coordinate transformation
    /// and nearest rounding modes: the source coordinate of each output index is computed on the host.
    /// </summary>
    private static Tensor[] Resize(OpCall c)
    {
        var mode = c.Node.String("mode", "nearest");
        if (mode is not ("nearest" or "linear"))
        {
            throw c.Unsupported($"mode '{mode}'");
        }

        if (c.Node.Ints("axes") is not null || c.Node.String("keep_aspect_ratio_policy", "stretch") != "stretch")
        {
            throw c.Unsupported("'axes' or 'keep_aspect_ratio_policy'");
        }

        var transform = c.Opset < 11 ? "asymmetric" : c.Node.String("coordinate_transformation_mode", "half_pixel");
        var nearest = c.Opset < 11 ? "floor" : c.Node.String("nearest_mode", "round_prefer_floor");
        var x = c.X;
        var scales = (c.Opset < 11 ? c.Input(1) : c.Input(2)) is { } s && s.numel() > 0 ? s.to_type(ScalarType.Float32).data<float>().ToArray() : null;
        var sizes = c.Opset >= 11 && c.Input(3) is { } z && z.numel() > 0 ? c.Longs(3) : null;
        var rank = (int)x.dim();
        for (var axis = 0; axis < rank; axis++)
        {
            var input = x.shape[axis];
            var output = sizes?[axis] ?? (long)Math.Floor(input * scales![axis]);
            var scale = sizes is null ? scales![axis] : output / (double)input;
            if (output == input && Math.Abs(scale - 1) < 1e-12)
            {
                continue;
            }

            // align_corners with scales divides by (input·scale − 1), not by the rounded output length less one.
            var resized = sizes is null ? input * scale : output;
            var source = Enumerable.Range(0, (int)output).Select(i => SourceCoordinate(i, scale, input, resized, transform, c)).ToArray();
            if (mode == "nearest")
            {
                var index = source.Select(v => Math.Clamp(Round(v, nearest, c), 0, input - 1)).ToArray();
                x = x.index_select(axis, tensor(index));
            }
            else
            {
                var clamped = source.Select(v => Math.Clamp(v, 0, input - 1)).ToArray();
                var lower = clamped.Select(v => (long)Math.Floor(v)).ToArray();
                var upper = lower.Select(v => Math.Min(v + 1, input - 1)).ToArray();
                var shape = Enumerable.Repeat(1L, rank).ToArray();
                shape[axis] = output;
                var weight = tensor(clamped.Zip(lower, (v, l) => (float)(v - l)).ToArray()).reshape(shape).to_type(x.dtype);
                x = x.index_select(axis, tensor(lower)) * (1 - weight) + x.index_select(axis, tensor(upper)) * weight;
            }
        }

        return [x];
    }

    private static double SourceCoordinate(int i, double scale, long input, double output, string transform, OpCall c) => transform switch
    {
        "half_pixel" => (i + 0.5) / scale - 0.5,
        "pytorch_half_pixel" => output > 1 ? (i + 0.5) / scale - 0.5 : 0,
        "align_corners" => output == 1 ? 0 : i * (input - 1) / (output - 1),
        "asymmetric" => i / scale,
        "tf_half_pixel_for_nn" => (i + 0.5) / scale,
        _ => throw c.Unsupported($"coordinate_transformation_mode '{transform}'"),
    };

    private static long Round(double v, string mode, OpCall c) => mode switch
    {
        "round_prefer_floor" => (long)Math.Ceiling(v - 0.5),
        "round_prefer_ceil" => (long)Math.Floor(v + 0.5),
        "floor" => (long)Math.Floor(v),
        "ceil" => (long)Math.Ceiling(v),
        _ => throw c.Unsupported($"nearest_mode '{mode}'"),
    };

    /// <summary>A tensor of the given shape filled with the <c>value</c> attribute's one element (float 0 without it).</summary>
    private static Tensor[] ConstantOfShape(OpCall c)
    {
        var shape = c.Longs(0)!;
        var value = c.Node.TensorValue("value") is { } given ? Torch.OnnxTorchConversion.EmbeddedToTorch(given).reshape(1) : zeros(1);
        return [value.expand(shape.Length == 0 ? [1] : shape).reshape(shape).contiguous()];
    }

    /// <summary>Numpy-style broadcast of x against the given shape (either side may hold the 1s).</summary>
    private static Tensor[] Expand(OpCall c)
    {
        var shape = c.Longs(1)!;
        var rank = Math.Max(shape.Length, (int)c.X.dim());
        var target = new long[rank];
        for (var i = 0; i < rank; i++)
        {
            var a = i - (rank - (int)c.X.dim()) is var ai and >= 0 ? c.X.shape[ai] : 1;
            var b = i - (rank - shape.Length) is var bi and >= 0 ? shape[bi] : 1;
            target[i] = a == 1 ? b : a;
        }

        return [c.X.expand(target)];
    }

    /// <summary>start, start + delta, … up to (not including) limit, in the inputs' type.</summary>
    private static Tensor[] Range(OpCall c)
    {
        var (start, limit, delta) = (c.Inputs[0]!, c.Inputs[1]!, c.Inputs[2]!);
        return start.is_floating_point()
            ? [arange(start.item<float>(), limit.item<float>(), delta.item<float>(), dtype: start.dtype)]
            : [arange(start.to_type(ScalarType.Int64).item<long>(), limit.to_type(ScalarType.Int64).item<long>(), delta.to_type(ScalarType.Int64).item<long>(), dtype: start.dtype)];
    }
}
