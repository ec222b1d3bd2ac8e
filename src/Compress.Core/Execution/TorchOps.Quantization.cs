using Compress.Core.Onnx;
using static TorchSharp.torch;

namespace Compress.Core.Execution;

/// <summary>
/// QuantizeLinear and DequantizeLinear (opsets 10–21): per-tensor, or per-axis with a 1-D scale; int8, uint8 and
/// int32 (dequantize only) codes. So the executor runs statically quantized (QDQ) graphs, as bias correction's
/// sequential pass needs. Blocked quantization and float8 are refused. Also com.microsoft GatherBlockQuantized with
/// uint8 data (4 or 8 bits, gather axis 0, blocks along the last axis), as the embedding tables are stored.
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

    /// <summary>
    /// The finetune step's fake quantization (compress.training domain): QuantizeLinear then DequantizeLinear on the same
    /// scale and zero point, with the gradient passed straight through the rounding (algorithms.md §17).
    /// </summary>
    private static Tensor[] FakeQuantize(OpCall c)
    {
        var zero = c.Input(2);
        var type = zero?.dtype ?? (c.Node.Int("output_dtype", 0) switch
        {
            0 or (int)Onnx.Proto.TensorProto.Types.DataType.Uint8 => ScalarType.Byte,
            (int)Onnx.Proto.TensorProto.Types.DataType.Int8 => ScalarType.Int8,
            var other => throw c.Unsupported($"output_dtype {OnnxElementTypes.Name((int)other)}"),
        });
        var (lo, hi) = type switch
        {
            ScalarType.Byte => (0, 255),
            ScalarType.Int8 => (-128, 127),
            _ => throw c.Unsupported($"{type} codes"),
        };
        var scale = PerAxis(c, c.Input(1)!).to_type(ScalarType.Float32);
        var z = zero is null ? zeros([]) : PerAxis(c, zero).to_type(ScalarType.Float32);
        var x = c.X.to_type(ScalarType.Float32);
        var rounded = ((x / scale).round() + z).clamp(lo, hi).sub(z).mul(scale);
        return [x + (rounded - x).detach()];
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

    /// <summary>Rows of a block-quantized table: gathered first, then only those rows dequantized.</summary>
    private static Tensor[] GatherBlockQuantized(OpCall c)
    {
        var bits = (int)c.Node.Int("bits", 4);
        var block = c.Node.Int("block_size", 128);
        if (c.X.dtype != ScalarType.Byte || bits is not (4 or 8) || c.X.dim() != 2 || c.Node.Int("gather_axis", 0) != 0 || c.Node.Int("quantize_axis", 1) is not (1 or -1))
        {
            throw c.Unsupported($"{c.X.dtype} data with {bits} bits, rank {c.X.dim()} and these axes");
        }

        var indices = c.Inputs[1]!.to_type(ScalarType.Int64);
        var flat = where(indices.lt(0), indices + c.X.shape[0], indices).flatten();
        var codes = Unpack(c.X.index_select(0, flat), bits);
        var width = codes.shape[1];
        var scales = c.Inputs[2]!.index_select(0, flat).to_type(ScalarType.Float32);
        var zeros = c.Input(3) is { } z
            ? Unpack(z.index_select(0, flat), bits).narrow(1, 0, scales.shape[1])
            : full_like(scales, 1 << (bits - 1));
        var values = (codes - zeros.repeat_interleave(block, 1).narrow(1, 0, width)) * scales.repeat_interleave(block, 1).narrow(1, 0, width);
        return [values.reshape([.. indices.shape, width]).to_type(c.Inputs[2]!.dtype)]; // the scales' type, as the kernel does
    }

    /// <summary>uint8 bytes as codes (float): as they are for 8 bits, two per byte (low nibble first) for 4.</summary>
    private static Tensor Unpack(Tensor bytes, int bits)
    {
        var values = bytes.to_type(ScalarType.Int32);
        return (bits == 8 ? values : stack([values.bitwise_and(15), values.bitwise_right_shift(4)], -1).reshape(bytes.shape[0], -1)).to_type(ScalarType.Float32);
    }
}
