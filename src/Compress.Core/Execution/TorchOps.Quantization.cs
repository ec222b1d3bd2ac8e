using Compress.Core.Onnx;
using static TorchSharp.torch;

namespace Compress.Core.Execution;

/// <summary>
/// QuantizeLinear and DequantizeLinear (opsets 10–21): per-tensor, or per-axis with a 1-D scale; int8, uint8 and
/// int32 (dequantize only) codes. So the executor runs statically quantized (QDQ) graphs, as bias correction's
/// sequential pass needs. Blocked quantization and float8 are refused.
/// </summary>
public static partial class TorchOps
{
    private static Tensor[] QuantizeLinear(OpCall c)
    {
        RefuseBlocks(c);
        var zero = c.Input(2);
        var type = zero?.dtype ?? (c.Node.Int("output_dtype", 0) switch
        {
            0 or (int)Onnx.Proto.TensorProto.Types.DataType.Uint8 => ScalarType.Byte,
            (int)Onnx.Proto.TensorProto.Types.DataType.Int8 => ScalarType.Int8,
            var other => throw c.Unsupported($"output_dtype {OnnxElementTypes.Name((int)other)}"),
        });
        (int Lo, int Hi) range = type switch
        {
            ScalarType.Byte => (0, 255),
            ScalarType.Int8 => (-128, 127),
            _ => throw c.Unsupported($"{type} codes"),
        };
        var scale = PerAxis(c, c.Input(1)!);
        var codes = (c.X.to_type(ScalarType.Float32) / scale).round(); // round half to even, as the spec says
        if (zero is not null)
        {
            codes = codes + PerAxis(c, zero).to_type(ScalarType.Float32);
        }

        return [codes.clamp(range.Lo, range.Hi).to_type(type)];
    }

    private static Tensor[] DequantizeLinear(OpCall c)
    {
        RefuseBlocks(c);
        if (c.X.dtype is not (ScalarType.Byte or ScalarType.Int8 or ScalarType.Int32))
        {
            throw c.Unsupported($"{c.X.dtype} codes");
        }

        var x = c.X.to_type(ScalarType.Float32);
        if (c.Input(2) is { } zero)
        {
            x = x - PerAxis(c, zero).to_type(ScalarType.Float32);
        }

        return [x * PerAxis(c, c.Input(1)!).to_type(ScalarType.Float32)];
    }

    /// <summary>A 1-D scale or zero point shaped to broadcast along the node's axis of x; a scalar as it is.</summary>
    private static Tensor PerAxis(OpCall c, Tensor value)
    {
        if (value.dim() == 0 || c.X.dim() == 0)
        {
            return value.reshape([]);
        }

        var axis = Axis(c.Node.Int("axis", 1), c.X);
        var shape = Enumerable.Repeat(1L, (int)c.X.dim()).ToArray();
        shape[axis] = value.numel();
        return value.reshape(shape);
    }

    private static void RefuseBlocks(OpCall c)
    {
        if (c.Node.Int("block_size", 0) != 0)
        {
            throw c.Unsupported("blocked quantization (block_size)");
        }
    }
}
