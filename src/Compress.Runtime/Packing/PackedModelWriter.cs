using System.Buffers.Binary;
using System.IO.Compression;

namespace Compress.Runtime.Packing;

/// <summary>One float32 tensor whose nonzero values are few (at most 256 distinct): it packs as codebook + coded indices.</summary>
public sealed record SharedTensor(string Name, IReadOnlyList<long> Dims, float[] Values);

/// <summary>
/// Writes the layout <see cref="PackedModel"/> reads. The engine hands it the ONNX model split in two (the model's
/// fields but its graph, and the graph without the shared tensors) and the shared tensors; the same inputs give the
/// same bytes (Brotli at a fixed quality and window, codebooks in ascending order, frequencies rounded deterministically).
/// </summary>
public static class PackedModelWriter
{
    private const int BrotliQuality = 11;
    private const int BrotliWindow = 22;

    /// <summary>The most distinct nonzero values a tensor may have to pack.</summary>
    public const int MaxCodebook = RansCoder.MaxAlphabet - 1;

    /// <summary>The packed file's bytes: the model's other fields and its graph without the shared tensors, and those tensors.</summary>
    public static byte[] Write(ReadOnlySpan<byte> modelWithoutGraph, ReadOnlySpan<byte> graphWithoutShared, IReadOnlyList<SharedTensor> tensors)
    {
        var payload = new PackedWriter();
        var skeleton = new byte[PackedModel.VarintLength((ulong)modelWithoutGraph.Length) + modelWithoutGraph.Length + graphWithoutShared.Length];
        var at = PackedModel.WriteVarint(skeleton, 0, (ulong)modelWithoutGraph.Length);
        modelWithoutGraph.CopyTo(skeleton.AsSpan(at));
        graphWithoutShared.CopyTo(skeleton.AsSpan(at + modelWithoutGraph.Length));
        var compressed = new byte[BrotliEncoder.GetMaxCompressedLength(skeleton.Length)];
        if (!BrotliEncoder.TryCompress(skeleton, compressed, out var written, BrotliQuality, BrotliWindow))
        {
            throw new InvalidOperationException("Brotli could not compress the model graph");
        }

        payload.Varint((ulong)skeleton.Length);
        payload.Varint((ulong)written);
        payload.Bytes(compressed.AsSpan(0, written));
        payload.Varint((ulong)tensors.Count);
        foreach (var tensor in tensors)
        {
            WriteTensor(payload, tensor);
        }

        var file = new byte[PackedModel.HeaderBytes + payload.Length];
        PackedModel.Magic.CopyTo(file);
        BinaryPrimitives.WriteUInt16LittleEndian(file.AsSpan(4), PackedModel.Version);
        BinaryPrimitives.WriteUInt16LittleEndian(file.AsSpan(6), 0);
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(8), (uint)payload.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(12), Crc32.Compute(payload.Written));
        payload.Written.CopyTo(file.AsSpan(PackedModel.HeaderBytes));
        return file;
    }

    /// <summary>The tensor's distinct nonzero values (by bit pattern: −0.0 and NaN payloads kept exactly), ascending; null past <see cref="MaxCodebook"/>.</summary>
    public static float[]? Codebook(ReadOnlySpan<float> values)
    {
        var distinct = new HashSet<uint>();
        foreach (var v in values)
        {
            var bits = BitConverter.SingleToUInt32Bits(v);
            if (bits != 0 && distinct.Add(bits) && distinct.Count > MaxCodebook)
            {
                return null;
            }
        }

        return distinct.Order().Select(BitConverter.UInt32BitsToSingle).OrderBy(v => v).ThenBy(BitConverter.SingleToUInt32Bits).ToArray();
    }

    private static void WriteTensor(PackedWriter output, SharedTensor tensor)
    {
        var codebook = Codebook(tensor.Values) ?? throw new ArgumentException($"'{tensor.Name}' has more than {MaxCodebook} distinct nonzero values", nameof(tensor));
        var index = new Dictionary<uint, ushort>(codebook.Length);
        for (var i = 0; i < codebook.Length; i++)
        {
            index[BitConverter.SingleToUInt32Bits(codebook[i])] = (ushort)(i + 1);
        }

        var symbols = new ushort[tensor.Values.Length];
        for (var i = 0; i < symbols.Length; i++)
        {
            var bits = BitConverter.SingleToUInt32Bits(tensor.Values[i]);
            symbols[i] = bits == 0 ? (ushort)0 : index[bits];
        }

        output.String(tensor.Name);
        output.Varint(1); // float32
        output.Varint((ulong)tensor.Dims.Count);
        foreach (var d in tensor.Dims)
        {
            output.Varint((ulong)d);
        }

        output.Varint((ulong)codebook.Length);
        foreach (var c in codebook)
        {
            output.UInt32(BitConverter.SingleToUInt32Bits(c));
        }

        RansCoder.Encode(symbols, codebook.Length + 1, output);
    }
}
