using System.Runtime.InteropServices;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Core.Data;

/// <summary>A dense C-order array read from (or written to) a .npy file; <see cref="Data"/> is raw little-endian.</summary>
public sealed record NpyArray(string Name, DataType ElementType, long[] Shape, byte[] Data)
{
    public long Length => Shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>Elements per sample (everything after the first dimension).</summary>
    public long SampleSize => Shape.Length == 0 ? 1 : Shape.Skip(1).Aggregate(1L, (a, b) => a * b);

    public ReadOnlySpan<T> As<T>() where T : unmanaged => MemoryMarshal.Cast<byte, T>(Data);

    /// <summary>The raw bytes of samples [start, start + count) of the first dimension.</summary>
    public ReadOnlySpan<byte> Rows(int start, int count)
    {
        var rowBytes = checked((int)(SampleSize * Onnx.OnnxElementTypes.BitWidth(ElementType) / 8));
        return Data.AsSpan(start * rowBytes, count * rowBytes);
    }

    public static NpyArray Create<T>(string name, T[] values, params long[] shape) where T : unmanaged =>
        new(name, Onnx.OnnxTensors.ElementTypeOf<T>(), shape, MemoryMarshal.AsBytes(values.AsSpan()).ToArray());

    /// <summary>The rows <paramref name="indices"/> of the first dimension, in that order.</summary>
    public NpyArray Take(IReadOnlyList<long> indices)
    {
        var rowBytes = checked((int)(SampleSize * Onnx.OnnxElementTypes.BitWidth(ElementType) / 8));
        var data = new byte[indices.Count * (long)rowBytes];
        for (var i = 0; i < indices.Count; i++)
        {
            Data.AsSpan(checked((int)(indices[i] * rowBytes)), rowBytes).CopyTo(data.AsSpan(i * rowBytes));
        }

        return this with { Shape = [indices.Count, .. Shape.Skip(1)], Data = data };
    }

    /// <summary>Values as longs (labels may be stored as any integer type).</summary>
    public long[] ToInt64() => ElementType switch
    {
        DataType.Int64 => As<long>().ToArray(),
        DataType.Int32 => As<int>().ToArray().Select(v => (long)v).ToArray(),
        DataType.Uint8 => Data.Select(v => (long)v).ToArray(),
        DataType.Int8 => As<sbyte>().ToArray().Select(v => (long)v).ToArray(),
        DataType.Int16 => As<short>().ToArray().Select(v => (long)v).ToArray(),
        DataType.Uint16 => As<ushort>().ToArray().Select(v => (long)v).ToArray(),
        DataType.Uint32 => As<uint>().ToArray().Select(v => (long)v).ToArray(),
        _ => throw new InvalidOperationException($"array '{Name}' holds {Onnx.OnnxElementTypes.Name((int)ElementType)}, not integers"),
    };
}
