using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Google.Protobuf;
using TorchSharp;
using static TorchSharp.torch;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Core.Torch;

/// <summary>
/// Moves weights between ONNX tensors and TorchSharp tensors with exactly one copy each way
/// (the bytes go straight from the protobuf, or the memory-mapped external file, into libtorch's storage).
/// </summary>
public static class OnnxTorchConversion
{
    /// <summary>A new CPU tensor holding the initializer's values, in its own element type and shape.</summary>
    public static Tensor ToTorch(this OnnxModel model, TensorProto tensor)
    {
        using var data = model.OpenTensorData(tensor);
        return ToTorch(tensor, data);
    }

    /// <summary>A tensor whose values are embedded in the proto (a Constant node's attribute, say).</summary>
    public static Tensor EmbeddedToTorch(TensorProto tensor)
    {
        using var data = TensorData.FromEmbedded(tensor);
        return ToTorch(tensor, data);
    }

    private static Tensor ToTorch(TensorProto tensor, TensorData data)
    {
        TorchRuntime.EnsureLoaded();
        var scalarType = ScalarTypeOf((DataType)tensor.DataType)
            ?? throw new NotSupportedException($"tensor '{tensor.Name}' has element type {OnnxElementTypes.Name(tensor.DataType)}, which TorchSharp cannot hold");
        var result = empty(tensor.Dims.ToArray(), scalarType);
        data.Span.CopyTo(result.bytes);
        return result;
    }

    /// <summary>A whole data array as a new tensor of its element type and shape.</summary>
    public static Tensor ToTorch(this Data.NpyArray array) => array.Shape.Length == 0 ? array.ToTorch(0, 1).reshape([]) : array.ToTorch(0, (int)array.Shape[0]);

    /// <summary>Samples [<paramref name="start"/>, <paramref name="start"/> + <paramref name="count"/>) of a data array as a new tensor of its element type.</summary>
    public static Tensor ToTorch(this Data.NpyArray array, int start, int count)
    {
        var type = ScalarTypeOf(array.ElementType) ?? throw new NotSupportedException($"input element type {array.ElementType}");
        var result = empty([count, .. array.Shape.Skip(1)], type);
        array.Rows(start, count).CopyTo(result.bytes);
        return result;
    }

    /// <summary>An ONNX tensor (raw_data) with the values, shape and element type of a TorchSharp tensor.</summary>
    public static TensorProto ToOnnx(this Tensor tensor, string name)
    {
        var type = OnnxTypeOf(tensor.dtype)
            ?? throw new NotSupportedException($"TorchSharp dtype {tensor.dtype} has no ONNX element type here");
        using var contiguous = tensor.cpu().contiguous();
        var proto = new TensorProto { Name = name, DataType = (int)type, RawData = ByteString.CopyFrom(contiguous.bytes) };
        proto.Dims.Add(tensor.shape);
        return proto;
    }

    public static ScalarType? ScalarTypeOf(DataType type) => type switch
    {
        DataType.Float => ScalarType.Float32,
        DataType.Double => ScalarType.Float64,
        DataType.Float16 => ScalarType.Float16,
        DataType.Bfloat16 => ScalarType.BFloat16,
        DataType.Int8 => ScalarType.Int8,
        DataType.Uint8 => ScalarType.Byte,
        DataType.Int16 => ScalarType.Int16,
        DataType.Int32 => ScalarType.Int32,
        DataType.Int64 => ScalarType.Int64,
        DataType.Bool => ScalarType.Bool,
        _ => null,
    };

    public static DataType? OnnxTypeOf(ScalarType type) => type switch
    {
        ScalarType.Float32 => DataType.Float,
        ScalarType.Float64 => DataType.Double,
        ScalarType.Float16 => DataType.Float16,
        ScalarType.BFloat16 => DataType.Bfloat16,
        ScalarType.Int8 => DataType.Int8,
        ScalarType.Byte => DataType.Uint8,
        ScalarType.Int16 => DataType.Int16,
        ScalarType.Int32 => DataType.Int32,
        ScalarType.Int64 => DataType.Int64,
        ScalarType.Bool => DataType.Bool,
        _ => null,
    };
}
