using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using Compress.Core.Onnx.Proto;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Core.Onnx;

/// <summary>
/// A read-only view of a tensor's raw little-endian bytes. Embedded raw_data is viewed without a copy;
/// external data is memory-mapped (the OS pages it in, the managed heap never holds it); values stored in
/// typed fields (float_data, int64_data, …) are converted once.
/// </summary>
public sealed unsafe class TensorData : IDisposable
{
    private readonly ReadOnlyMemory<byte> _memory;
    private readonly MemoryMappedFile? _file;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly byte* _pointer;
    private readonly long _length;

    private TensorData(ReadOnlyMemory<byte> memory)
    {
        _memory = memory;
        _length = memory.Length;
    }

    private TensorData(MemoryMappedFile file, MemoryMappedViewAccessor view, long length)
    {
        _file = file;
        _view = view;
        _length = length;
        byte* start = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref start);
        _pointer = start + view.PointerOffset;
    }

    public long Length => _length;

    /// <summary>The bytes. A span is limited to 2 GiB; larger external tensors are read through <see cref="CopyTo"/>.</summary>
    public ReadOnlySpan<byte> Span => _view is null
        ? _memory.Span
        : new ReadOnlySpan<byte>(_pointer, checked((int)_length));

    public ReadOnlySpan<T> As<T>() where T : unmanaged => MemoryMarshal.Cast<byte, T>(Span);

    /// <summary>Streams the bytes to <paramref name="destination"/> in chunks (works past 2 GiB).</summary>
    public void CopyTo(Stream destination)
    {
        if (_view is null)
        {
            destination.Write(_memory.Span);
            return;
        }

        const int chunk = 1 << 22;
        for (long position = 0; position < _length; position += chunk)
        {
            var size = (int)Math.Min(chunk, _length - position);
            destination.Write(new ReadOnlySpan<byte>(_pointer + position, size));
        }
    }

    internal static TensorData Map(ExternalDataReference reference)
    {
        if (reference.Length == 0)
        {
            return new TensorData(ReadOnlyMemory<byte>.Empty);
        }

        var file = MemoryMappedFile.CreateFromFile(reference.FullPath, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        try
        {
            var view = file.CreateViewAccessor(reference.Offset, reference.Length, MemoryMappedFileAccess.Read);
            return new TensorData(file, view, reference.Length);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    internal static TensorData FromEmbedded(TensorProto tensor)
    {
        if (tensor.HasRawData)
        {
            return new TensorData(tensor.RawData.Memory);
        }

        return new TensorData(TypedFieldsToRaw(tensor));
    }

    /// <summary>Converts values held in typed fields to raw little-endian bytes, as raw_data would hold them.</summary>
    private static byte[] TypedFieldsToRaw(TensorProto tensor)
    {
        var type = (DataType)tensor.DataType;
        switch (type)
        {
            case DataType.Float:
            case DataType.Complex64:
                return MemoryMarshal.AsBytes(tensor.FloatData.ToArray().AsSpan()).ToArray();
            case DataType.Double:
            case DataType.Complex128:
                return MemoryMarshal.AsBytes(tensor.DoubleData.ToArray().AsSpan()).ToArray();
            case DataType.Int64:
                return MemoryMarshal.AsBytes(tensor.Int64Data.ToArray().AsSpan()).ToArray();
            case DataType.Uint64:
                return MemoryMarshal.AsBytes(tensor.Uint64Data.ToArray().AsSpan()).ToArray();
            case DataType.Uint32:
                return MemoryMarshal.AsBytes(tensor.Uint64Data.Select(v => (uint)v).ToArray().AsSpan()).ToArray();
            case DataType.Int32:
                return MemoryMarshal.AsBytes(tensor.Int32Data.ToArray().AsSpan()).ToArray();
            case DataType.String:
            case DataType.Undefined:
                throw new InvalidOperationException($"tensor '{tensor.Name}' of type {OnnxElementTypes.Name(tensor.DataType)} has no raw byte form");
            default:
                return NarrowInt32Data(tensor, type);
        }
    }

    // int32_data holds one element per entry for 8/16-bit types and two packed 4-bit elements per entry.
    private static byte[] NarrowInt32Data(TensorProto tensor, DataType type)
    {
        var bits = OnnxElementTypes.BitWidth(type);
        var values = tensor.Int32Data;
        if (bits == 16)
        {
            var result = new byte[values.Count * 2];
            for (var i = 0; i < values.Count; i++)
            {
                BitConverter.TryWriteBytes(result.AsSpan(i * 2), (ushort)values[i]);
            }

            return result;
        }

        var bytes = new byte[values.Count];
        for (var i = 0; i < values.Count; i++)
        {
            bytes[i] = (byte)values[i];
        }

        return bytes;
    }

    public void Dispose()
    {
        if (_view is not null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
            _file!.Dispose();
        }
    }
}
