using System.Buffers.Binary;
using System.IO.Compression;
using System.Runtime.InteropServices;

namespace Compress.Runtime.Packing;

/// <summary>
/// A packed model (<c>.cpack</c>, docs/packed-format.md): a 16-byte header (magic <c>CPAK</c>, version, payload
/// length, CRC-32 of the payload), then the payload: the ONNX model without its shared-weight tensors, Brotli-compressed,
/// and one record per shared-weight tensor (name, shape, codebook, rANS-coded indices with 0 for a pruned weight).
/// <see cref="Expand"/> turns it back into a standard ONNX model in memory, every weight decoded to float32, the same
/// values the engine wrote; nothing of a file that does not hold up is used.
/// </summary>
public static class PackedModel
{
    /// <summary>The packed model's file extension.</summary>
    public const string Extension = ".cpack";
    /// <summary>The format version this library writes and reads.</summary>
    public const ushort Version = 1;
    /// <summary>Bytes of the header before the payload.</summary>
    public const int HeaderBytes = 16;
    internal static ReadOnlySpan<byte> Magic => "CPAK"u8;

    /// <summary>The largest model the format holds (ONNX's protobuf limit).</summary>
    internal const long MaxModelBytes = int.MaxValue;

    /// <summary>Whether <paramref name="head"/> (a file's first bytes) starts like a packed model.</summary>
    public static bool IsPacked(ReadOnlySpan<byte> head) => head.Length >= 4 && head[..4].SequenceEqual(Magic);

    /// <summary>Whether the file at <paramref name="path"/> is a packed model (by its first bytes, whatever its name).</summary>
    public static bool IsPackedFile(string path)
    {
        Span<byte> head = stackalloc byte[4];
        using var stream = File.OpenRead(path);
        return stream.ReadAtLeast(head, 4, throwOnEndOfStream: false) == 4 && IsPacked(head);
    }

    /// <summary>The ONNX model a packed file holds, as the bytes of a standard <c>.onnx</c> file.</summary>
    /// <param name="packed">The packed file's bytes.</param>
    /// <param name="what">How messages name the file (its path).</param>
    /// <exception cref="PackedModelException">Not a packed model, an unknown version, truncated or corrupt.</exception>
    public static byte[] Expand(ReadOnlySpan<byte> packed, string what = "the packed model")
    {
        var payload = Payload(packed, what);
        var reader = new PackedReader(payload, what);
        var skeleton = Skeleton(ref reader, what);
        var model = new PackedReader(skeleton, what);
        var rest = model.Bytes(model.Count(skeleton.Length, "the model header length"));
        var graph = skeleton[model.Position..];

        var count = reader.Count(1 << 24, "the tensor count");
        var tensors = new List<TensorRecord>(count);
        long graphLength = graph.Length;
        for (var t = 0; t < count; t++)
        {
            var tensor = TensorRecord.Read(ref reader);
            tensors.Add(tensor);
            graphLength += 1 + VarintLength((ulong)tensor.MessageLength) + tensor.MessageLength;
        }

        if (reader.Remaining != 0)
        {
            throw reader.Corrupt($"{reader.Remaining} bytes follow the last tensor");
        }

        var total = rest.Length + 1 + VarintLength((ulong)graphLength) + graphLength;
        if (total > MaxModelBytes)
        {
            throw reader.Corrupt($"the model it describes would be {total:N0} bytes, past ONNX's 2 GB limit");
        }

        // ModelProto fields but the graph, then the graph (field 7): the graph's fields, then the tensors as initializers (field 5).
        var onnx = new byte[total];
        var at = Copy(rest, onnx, 0);
        onnx[at++] = (7 << 3) | 2;
        at = WriteVarint(onnx, at, (ulong)graphLength);
        at = Copy(graph, onnx, at);
        foreach (var tensor in tensors)
        {
            at = tensor.Write(onnx, at);
        }

        return onnx;
    }

    /// <summary>The payload after a header that holds: magic, version, flags, length, checksum.</summary>
    private static ReadOnlySpan<byte> Payload(ReadOnlySpan<byte> packed, string what)
    {
        if (packed.Length < HeaderBytes || !IsPacked(packed))
        {
            throw new PackedModelException(IsPacked(packed)
                ? $"{what} is truncated: {packed.Length} bytes, shorter than the {HeaderBytes}-byte header"
                : $"{what} is not a packed model (it does not start with 'CPAK')");
        }

        var version = BinaryPrimitives.ReadUInt16LittleEndian(packed[4..]);
        if (version != Version)
        {
            throw new PackedModelException($"{what} is packed format version {version}; this Compress.Runtime reads version {Version} (update the package, or re-pack the model)");
        }

        if (BinaryPrimitives.ReadUInt16LittleEndian(packed[6..]) != 0)
        {
            throw new PackedModelException($"{what} is corrupt: its header's reserved flags are not zero");
        }

        var length = BinaryPrimitives.ReadUInt32LittleEndian(packed[8..]);
        if (length != packed.Length - HeaderBytes)
        {
            throw new PackedModelException(length > packed.Length - HeaderBytes
                ? $"{what} is truncated: its header announces {length:N0} bytes of payload, {packed.Length - HeaderBytes:N0} are there"
                : $"{what} is corrupt: {packed.Length - HeaderBytes - length:N0} bytes follow its payload");
        }

        var payload = packed[HeaderBytes..];
        var expected = BinaryPrimitives.ReadUInt32LittleEndian(packed[12..]);
        if (Crc32.Compute(payload) != expected)
        {
            throw new PackedModelException($"{what} is corrupt: its checksum does not match (the file was changed or damaged after packing)");
        }

        return payload;
    }

    private static byte[] Skeleton(ref PackedReader reader, string what)
    {
        var size = reader.Count(MaxModelBytes, "the model's size");
        var compressed = reader.Bytes(reader.Count(reader.Remaining, "the compressed model's length"));
        var skeleton = new byte[size];
        if (!BrotliDecoder.TryDecompress(compressed, skeleton, out var written) || written != size)
        {
            throw new PackedModelException($"{what} is corrupt: its model graph does not decompress to the {size:N0} bytes announced");
        }

        return skeleton;
    }

    internal static int VarintLength(ulong value)
    {
        var length = 1;
        while (value >= 0x80)
        {
            value >>= 7;
            length++;
        }

        return length;
    }

    internal static int WriteVarint(byte[] target, int at, ulong value)
    {
        while (value >= 0x80)
        {
            target[at++] = (byte)(value | 0x80);
            value >>= 7;
        }

        target[at++] = (byte)value;
        return at;
    }

    private static int Copy(ReadOnlySpan<byte> source, byte[] target, int at)
    {
        source.CopyTo(target.AsSpan(at));
        return at + source.Length;
    }

    /// <summary>One shared-weight tensor: read and decoded on the first pass, written as a TensorProto on the second.</summary>
    private sealed class TensorRecord
    {
        private const int FloatType = 1;
        private byte[] _name = [];
        private long[] _dims = [];
        private float[] _codebook = [];
        private ushort[] _symbols = [];

        /// <summary>Bytes of the TensorProto: dims (1), data_type (2), name (8), raw_data (9).</summary>
        public long MessageLength => HeaderLength + 1 + VarintLength((ulong)RawLength) + RawLength;

        private long RawLength => _symbols.LongLength * sizeof(float);

        private int HeaderLength =>
            _dims.Sum(d => 1 + VarintLength((ulong)d)) + 1 + VarintLength(FloatType) + 1 + VarintLength((ulong)_name.Length) + _name.Length;

        public static TensorRecord Read(ref PackedReader reader)
        {
            var record = new TensorRecord();
            record._name = reader.Bytes(reader.Count(1 << 16, "a tensor name's length")).ToArray();
            if (reader.Count(32, "a tensor's element type") != FloatType)
            {
                throw reader.Corrupt("a tensor's element type is not float32");
            }

            record._dims = new long[reader.Count(16, "a tensor's rank")];
            long elements = 1;
            for (var d = 0; d < record._dims.Length; d++)
            {
                record._dims[d] = reader.Count(MaxModelBytes / sizeof(float), "a tensor dimension");
                elements *= record._dims[d];
                if (elements > MaxModelBytes / sizeof(float))
                {
                    throw reader.Corrupt("a tensor has more elements than a model can hold");
                }
            }

            record._codebook = new float[reader.Count(RansCoder.MaxAlphabet - 1, "a codebook's size") + 1];
            for (var i = 1; i < record._codebook.Length; i++)
            {
                record._codebook[i] = BitConverter.UInt32BitsToSingle(reader.UInt32());
            }

            record._symbols = new ushort[elements];
            RansCoder.Decode(ref reader, record._codebook.Length, record._symbols);
            return record;
        }

        public int Write(byte[] target, int at)
        {
            target[at++] = (5 << 3) | 2;
            at = WriteVarint(target, at, (ulong)MessageLength);
            foreach (var d in _dims)
            {
                target[at++] = (1 << 3) | 0;
                at = WriteVarint(target, at, (ulong)d);
            }

            target[at++] = (2 << 3) | 0;
            at = WriteVarint(target, at, FloatType);
            target[at++] = (8 << 3) | 2;
            at = WriteVarint(target, at, (ulong)_name.Length);
            at = Copy(_name, target, at);
            target[at++] = (9 << 3) | 2;
            var raw = (int)RawLength;
            at = WriteVarint(target, at, (ulong)raw);
            var values = MemoryMarshal.Cast<byte, float>(target.AsSpan(at, raw));
            var codebook = _codebook;
            var symbols = _symbols;
            for (var i = 0; i < symbols.Length; i++)
            {
                values[i] = codebook[symbols[i]];
            }

            _symbols = []; // the decoded indices go as soon as their tensor is written
            return at + raw;
        }
    }
}
