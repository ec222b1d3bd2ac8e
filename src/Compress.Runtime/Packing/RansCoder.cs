using System.Buffers.Binary;

namespace Compress.Runtime.Packing;

/// <summary>
/// A static rANS coder (Duda's asymmetric numeral systems, range variant; 32-bit state, byte-wise renormalisation,
/// probabilities on 14 bits) with two contexts: whether the previous symbol was 0 (a pruned weight) or not. Symbol 0 is
/// a pruned weight, 1..k a codebook index, so one stream codes the sparsity mask and the indices together and the
/// context captures runs of pruned weights. The frequency tables are written before the stream. Chosen over Huffman by
/// measurement (docs/packed-format.md): Huffman spends at least one bit per symbol, which on 90 %-sparse layers is more
/// than the whole entropy; rANS stays within a fraction of a percent of it and decodes at a table lookup per symbol.
/// </summary>
public static class RansCoder
{
    /// <summary>Bits of the frequency tables' total (probabilities in units of 2⁻¹⁴).</summary>
    public const int ScaleBits = 14;
    /// <summary>Models by context: the previous symbol zero or not.</summary>
    public const int Contexts = 2;
    /// <summary>The most symbols a stream may use (zero and 256 shared values).</summary>
    public const int MaxAlphabet = 257;
    private const uint Scale = 1u << ScaleBits;
    private const uint Lower = 1u << 23;

    /// <summary>Writes the tables and the coded stream of <paramref name="symbols"/> (each below <paramref name="alphabet"/>).</summary>
    public static void Encode(ReadOnlySpan<ushort> symbols, int alphabet, PackedWriter output)
    {
        if (alphabet is < 1 or > MaxAlphabet)
        {
            throw new ArgumentOutOfRangeException(nameof(alphabet));
        }

        var counts = new long[Contexts][];
        for (var c = 0; c < Contexts; c++)
        {
            counts[c] = new long[alphabet];
        }

        var previous = 0;
        foreach (var s in symbols)
        {
            if (s >= alphabet)
            {
                throw new ArgumentOutOfRangeException(nameof(symbols), $"symbol {s} is not below the alphabet size {alphabet}");
            }

            counts[previous == 0 ? 0 : 1][s]++;
            previous = s;
        }

        var freqs = new uint[Contexts][];
        var starts = new uint[Contexts][];
        output.Varint((ulong)alphabet);
        for (var c = 0; c < Contexts; c++)
        {
            freqs[c] = Normalize(counts[c]);
            starts[c] = Starts(freqs[c]);
            foreach (var f in freqs[c])
            {
                output.Varint(f);
            }
        }

        // Encoded backwards into the end of a buffer, so the decoder reads forwards. A symbol emits at most 2 bytes.
        var buffer = new byte[(2 * (long)symbols.Length) + 8];
        var pos = buffer.Length;
        var x = Lower;
        for (var i = symbols.Length - 1; i >= 0; i--)
        {
            var s = symbols[i];
            var c = i == 0 || symbols[i - 1] == 0 ? 0 : 1;
            var f = freqs[c][s];
            var max = ((Lower >> ScaleBits) << 8) * f;
            while (x >= max)
            {
                buffer[--pos] = (byte)x;
                x >>= 8;
            }

            x = ((x / f) << ScaleBits) + (x % f) + starts[c][s];
        }

        pos -= 4;
        BinaryPrimitives.WriteUInt32LittleEndian(buffer.AsSpan(pos), x);
        output.Varint((ulong)(buffer.Length - pos));
        output.Bytes(buffer.AsSpan(pos));
    }

    /// <summary>Reads what <see cref="Encode"/> wrote into <paramref name="symbols"/> (its length is the symbol count).</summary>
    /// <exception cref="PackedModelException">The tables or the stream do not hold.</exception>
    /// <param name="input">The reader, at the stream.</param>
    /// <param name="alphabet">The alphabet the record's codebook implies; the stream's own must match.</param>
    /// <param name="symbols">Where the symbols go.</param>
    public static void Decode(ref PackedReader input, int alphabet, Span<ushort> symbols)
    {
        if (input.Count(MaxAlphabet, "the alphabet size") != alphabet)
        {
            throw input.Corrupt($"a coded stream's alphabet does not match its codebook of {alphabet - 1} values");
        }

        var freqs = new uint[Contexts][];
        var starts = new uint[Contexts][];
        var lookup = new ushort[Contexts][];
        for (var c = 0; c < Contexts; c++)
        {
            freqs[c] = new uint[alphabet];
            long total = 0;
            for (var s = 0; s < alphabet; s++)
            {
                freqs[c][s] = (uint)input.Count(Scale, "a symbol frequency");
                total += freqs[c][s];
            }

            if (total != 0 && total != Scale)
            {
                throw input.Corrupt($"a frequency table sums to {total}, not {Scale}");
            }

            starts[c] = Starts(freqs[c]);
            lookup[c] = new ushort[total == 0 ? 0 : Scale];
            for (var s = 0; s < alphabet; s++)
            {
                lookup[c].AsSpan((int)starts[c][s], (int)freqs[c][s]).Fill((ushort)s);
            }
        }

        var stream = input.Bytes(input.Count(int.MaxValue, "the stream length"));
        if (stream.Length < 4)
        {
            throw input.Corrupt("a coded stream is shorter than its state");
        }

        var x = BinaryPrimitives.ReadUInt32LittleEndian(stream);
        var pos = 4;
        var previous = 0;
        for (var i = 0; i < symbols.Length; i++)
        {
            var c = previous == 0 ? 0 : 1;
            var table = lookup[c];
            if (table.Length == 0)
            {
                throw input.Corrupt("a symbol falls in a context with no frequencies");
            }

            var slot = x & (Scale - 1);
            var s = table[slot];
            x = (freqs[c][s] * (x >> ScaleBits)) + slot - starts[c][s];
            while (x < Lower)
            {
                if (pos >= stream.Length)
                {
                    throw input.Corrupt("a coded stream ends early");
                }

                x = (x << 8) | stream[pos++];
            }

            symbols[i] = s;
            previous = s;
        }

        if (x != Lower || pos != stream.Length)
        {
            throw input.Corrupt("a coded stream does not end where its symbols do");
        }
    }

    /// <summary>Counts scaled to sum to 2^14, every symbol that occurs at least 1; deterministic (ties go to the lowest symbol).</summary>
    internal static uint[] Normalize(long[] counts)
    {
        var total = counts.Sum();
        var freqs = new uint[counts.Length];
        if (total == 0)
        {
            return freqs;
        }

        long sum = 0;
        for (var s = 0; s < counts.Length; s++)
        {
            freqs[s] = counts[s] == 0 ? 0 : (uint)Math.Max(1, counts[s] * Scale / total);
            sum += freqs[s];
        }

        while (sum != Scale)
        {
            // The largest frequency absorbs the rounding: it changes its symbol's cost the least.
            var largest = 0;
            for (var s = 1; s < freqs.Length; s++)
            {
                largest = freqs[s] > freqs[largest] ? s : largest;
            }

            if (sum < Scale)
            {
                freqs[largest] += (uint)(Scale - sum);
                sum = Scale;
            }
            else
            {
                var take = (uint)Math.Min(sum - Scale, freqs[largest] - 1);
                freqs[largest] -= take;
                sum -= take;
            }
        }

        return freqs;
    }

    private static uint[] Starts(uint[] freqs)
    {
        var starts = new uint[freqs.Length];
        for (var s = 1; s < freqs.Length; s++)
        {
            starts[s] = starts[s - 1] + freqs[s - 1];
        }

        return starts;
    }
}
