using System.Runtime.InteropServices;
using Compress.Core.Onnx.Proto;
using Google.Protobuf;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Core.Onnx;

/// <summary>Makes <see cref="TensorProto"/>s from .NET data (raw little-endian bytes, as ONNX Runtime prefers).</summary>
public static class OnnxTensors
{
    public static TensorProto Create<T>(string name, ReadOnlySpan<T> values, params long[] dims) where T : unmanaged
    {
        var type = ElementTypeOf<T>();
        var expected = OnnxElementTypes.ElementCount(dims);
        if (expected != values.Length)
        {
            throw new ArgumentException($"tensor '{name}': {values.Length} values do not fill shape [{string.Join(",", dims)}]", nameof(values));
        }

        var tensor = new TensorProto { Name = name, DataType = (int)type, RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values)) };
        tensor.Dims.Add(dims);
        return tensor;
    }

    public static TensorProto Create<T>(string name, T[] values, params long[] dims) where T : unmanaged =>
        Create(name, (ReadOnlySpan<T>)values, dims);

    public static TensorProto Scalar<T>(string name, T value) where T : unmanaged => Create(name, [value]);

    public static DataType ElementTypeOf<T>() where T : unmanaged => default(T) switch
    {
        float => DataType.Float,
        double => DataType.Double,
        Half => DataType.Float16,
        long => DataType.Int64,
        int => DataType.Int32,
        short => DataType.Int16,
        sbyte => DataType.Int8,
        byte => DataType.Uint8,
        ushort => DataType.Uint16,
        uint => DataType.Uint32,
        ulong => DataType.Uint64,
        bool => DataType.Bool,
        _ => throw new NotSupportedException($"no ONNX element type for {typeof(T).Name}"),
    };
}
