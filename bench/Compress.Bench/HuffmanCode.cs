using Compress.Core.Onnx;
using Compress.Runtime.Packing;

namespace Compress.Bench;

/// <summary>
/// A static canonical Huffman code over one tensor's symbols — the comparison the packed format's coder was chosen
/// against (docs/packed-format.md). Decoding is canonical (first code and count per length, as zlib's puff does).
/// </summary>
internal sealed class HuffmanCode
{
    private readonly int[] _lengths;
    private readonly uint[] _codes;
    private readonly int[] _count;
    private readonly int[] _sorted;

    private HuffmanCode(int[] lengths)
    {
        _lengths = lengths;
        var max = lengths.Max();
        _count = new int[max + 1];
        foreach (var l in lengths.Where(l => l > 0))
        {
            _count[l]++;
        }

        _sorted = Enumerable.Range(0, lengths.Length).Where(s => lengths[s] > 0).OrderBy(s => lengths[s]).ThenBy(s => s).ToArray();
        _codes = new uint[lengths.Length];
        uint code = 0;
        var previous = 0;
        foreach (var s in _sorted)
        {
            code <<= lengths[s] - previous;
            previous = lengths[s];
            _codes[s] = code++;
        }
    }

    /// <summary>The table as a decoder would need it: one length per symbol (a byte each).</summary>
    public int TableBytes => _lengths.Length;

    public static HuffmanCode Build(ushort[] symbols, int alphabet)
    {
        var counts = new long[alphabet];
        foreach (var s in symbols)
        {
            counts[s]++;
        }

        var lengths = new int[alphabet];
        var present = Enumerable.Range(0, alphabet).Where(s => counts[s] > 0).ToList();
        if (present.Count == 1)
        {
            lengths[present[0]] = 1;
            return new HuffmanCode(lengths);
        }

        // Nodes: leaves 0..alphabet-1, internal nodes after; ties broken by node number (deterministic).
        var parent = new List<int>(new int[alphabet]);
        var queue = new PriorityQueue<int, (long, int)>();
        foreach (var s in present)
        {
            queue.Enqueue(s, (counts[s], s));
        }

        var next = alphabet;
        while (queue.Count > 1)
        {
            queue.TryDequeue(out var a, out var pa);
            queue.TryDequeue(out var b, out var pb);
            parent.Add(-1);
            parent[a] = next;
            parent[b] = next;
            queue.Enqueue(next, (pa.Item1 + pb.Item1, next));
            next++;
        }

        var root = next - 1;
        foreach (var s in present)
        {
            var depth = 0;
            for (var n = s; n != root; n = parent[n])
            {
                depth++;
            }

            lengths[s] = depth;
        }

        return new HuffmanCode(lengths);
    }

    public byte[] Encode(ushort[] symbols)
    {
        var bits = symbols.Sum(s => (long)_lengths[s]);
        var output = new byte[(bits + 7) / 8];
        long at = 0;
        foreach (var s in symbols)
        {
            for (var i = _lengths[s] - 1; i >= 0; i--, at++)
            {
                if (((_codes[s] >> i) & 1) != 0)
                {
                    output[at >> 3] |= (byte)(0x80 >> (int)(at & 7));
                }
            }
        }

        return output;
    }

    public void Decode(byte[] bits, ushort[] symbols)
    {
        long at = 0;
        for (var i = 0; i < symbols.Length; i++)
        {
            int code = 0, first = 0, index = 0;
            for (var length = 1; ; length++)
            {
                code |= (bits[at >> 3] >> (7 - (int)(at & 7))) & 1;
                at++;
                var count = length < _count.Length ? _count[length] : 0;
                if (code - count < first)
                {
                    symbols[i] = (ushort)_sorted[index + (code - first)];
                    break;
                }

                index += count;
                first = (first + count) << 1;
                code <<= 1;
            }
        }
    }
}

/// <summary>The symbol streams a packed file codes (symbol 0 a zero, j the j-th codebook value), read back from its expansion.</summary>
internal static class PackedStreams
{
    public static List<(ushort[] Symbols, int Alphabet)> Read(byte[] packed)
    {
        var proto = Compress.Core.Onnx.Proto.ModelProto.Parser.ParseFrom(PackedModel.Expand(packed));
        var streams = new List<(ushort[], int)>();
        foreach (var tensor in proto.Graph.Initializer.Where(t => t.DataType == 1 && OnnxElementTypes.ElementCount(t.Dims) >= Compress.Core.Packing.PackedArtifact.MinElements))
        {
            var values = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(tensor.RawData.Span).ToArray();
            if (PackedModelWriter.Codebook(values) is not { } codebook)
            {
                continue;
            }

            var index = codebook.Select((v, i) => (BitConverter.SingleToUInt32Bits(v), i + 1)).ToDictionary(p => p.Item1, p => p.Item2);
            var symbols = values.Select(v => BitConverter.SingleToUInt32Bits(v) is var b && b == 0 ? (ushort)0 : (ushort)index[b]).ToArray();
            streams.Add((symbols, codebook.Length + 1));
        }

        return streams;
    }
}
