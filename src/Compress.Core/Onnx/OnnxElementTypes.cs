using Compress.Core.Onnx.Proto;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Core.Onnx;

/// <summary>Facts about ONNX element types: storage width and the names ONNX uses.</summary>
public static class OnnxElementTypes
{
    /// <summary>Bits per element in raw_data, or 0 for types without a fixed width (string, undefined).</summary>
    public static int BitWidth(DataType type) => type switch
    {
        DataType.Float or DataType.Int32 or DataType.Uint32 => 32,
        DataType.Double or DataType.Int64 or DataType.Uint64 or DataType.Complex64 => 64,
        DataType.Complex128 => 128,
        DataType.Float16 or DataType.Bfloat16 or DataType.Int16 or DataType.Uint16 => 16,
        DataType.Int8 or DataType.Uint8 or DataType.Bool or DataType.Float8E4M3Fn or DataType.Float8E4M3Fnuz
            or DataType.Float8E5M2 or DataType.Float8E5M2Fnuz or DataType.Float8E8M0 => 8,
        DataType.Int4 or DataType.Uint4 or DataType.Float4E2M1 => 4,
        _ => 0,
    };

    public static int BitWidth(int type) => BitWidth((DataType)type);

    /// <summary>Bytes that <paramref name="elements"/> values of <paramref name="type"/> take in raw_data (4-bit types packed two per byte).</summary>
    public static long ByteSize(DataType type, long elements) => (elements * BitWidth(type) + 7) / 8;

    /// <summary>The lower-case name ONNX uses in type strings, e.g. <c>float</c>, <c>int64</c>, <c>float16</c>.</summary>
    public static string Name(int type) => Compress.Spec.Onnx.OnnxTypeNames.Name(type);

    /// <summary>A type as ONNX writes it: <c>tensor(float)</c>, <c>seq(tensor(int64))</c>, <c>map(string,tensor(float))</c>.</summary>
    public static string Describe(TypeProto? type) => type?.ValueCase switch
    {
        TypeProto.ValueOneofCase.TensorType => $"tensor({Name(type.TensorType.ElemType)})",
        TypeProto.ValueOneofCase.SparseTensorType => $"sparse_tensor({Name(type.SparseTensorType.ElemType)})",
        TypeProto.ValueOneofCase.SequenceType => $"seq({Describe(type.SequenceType.ElemType)})",
        TypeProto.ValueOneofCase.OptionalType => $"optional({Describe(type.OptionalType.ElemType)})",
        TypeProto.ValueOneofCase.MapType => $"map({Name(type.MapType.KeyType)},{Describe(type.MapType.ValueType)})",
        TypeProto.ValueOneofCase.OpaqueType => $"opaque({type.OpaqueType.Domain}.{type.OpaqueType.Name})",
        _ => "unknown",
    };

    /// <summary>Number of elements of a tensor with these dims (1 for a scalar).</summary>
    public static long ElementCount(IEnumerable<long> dims)
    {
        long count = 1;
        foreach (var d in dims)
        {
            count = checked(count * d);
        }

        return count;
    }
}
