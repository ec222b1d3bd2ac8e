using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace Compress.Runtime.Packing;

/// <summary>Reads a packed file's fields (little-endian, LEB128 varints); any read past the end is a <see cref="PackedModelException"/>.</summary>
public ref struct PackedReader
{
    private readonly ReadOnlySpan<byte> _data;
    private readonly string _what;

    /// <summary>A reader over <paramref name="data"/>; messages name the file as <paramref name="what"/>.</summary>
    public PackedReader(ReadOnlySpan<byte> data, string what)
    {
        _data = data;
        _what = what;
        Position = 0;
    }

    /// <summary>Bytes read so far.</summary>
    public int Position { get; private set; }

    /// <summary>Bytes left to read.</summary>
    public readonly int Remaining => _data.Length - Position;

    /// <summary>One byte.</summary>
    public byte Byte() => Bytes(1)[0];

    /// <summary>A little-endian 32-bit unsigned integer.</summary>
    public uint UInt32() => BinaryPrimitives.ReadUInt32LittleEndian(Bytes(4));

    /// <summary>An unsigned LEB128 varint of at most 64 bits.</summary>
    public ulong Varint()
    {
        ulong value = 0;
        for (var shift = 0; shift < 64; shift += 7)
        {
            var b = Byte();
            value |= (ulong)(b & 0x7F) << shift;
            if ((b & 0x80) == 0)
            {
                return value;
            }
        }

        throw Corrupt("a varint runs past 64 bits");
    }

    /// <summary>A varint that must lie in [0, <paramref name="max"/>].</summary>
    public int Count(long max, string field)
    {
        var value = Varint();
        return value <= (ulong)max ? (int)value : throw Corrupt($"{field} {value} is out of range (at most {max})");
    }

    /// <summary>The next <paramref name="count"/> bytes.</summary>
    public ReadOnlySpan<byte> Bytes(int count)
    {
        if (count < 0 || count > Remaining)
        {
            throw Corrupt($"it ends {count - Remaining} bytes early (truncated)");
        }

        var span = _data.Slice(Position, count);
        Position += count;
        return span;
    }

    /// <summary>A UTF-8 string behind its varint length (at most <paramref name="maxBytes"/>); <paramref name="field"/> names it in messages.</summary>
    public string String(int maxBytes, string field)
    {
        var bytes = Bytes(Count(maxBytes, $"the length of {field}"));
        try
        {
            return new UTF8Encoding(false, true).GetString(bytes);
        }
        catch (DecoderFallbackException e)
        {
            throw new PackedModelException($"{_what} is corrupt: {field} is not UTF-8", e);
        }
    }

    /// <summary>The exception for a file that does not hold up, saying <paramref name="why"/>.</summary>
    public readonly PackedModelException Corrupt(string why) => new($"{_what} is corrupt: {why}");
}

/// <summary>Writes a packed file's fields in the layout <see cref="PackedReader"/> reads.</summary>
public sealed class PackedWriter
{
    private readonly ArrayBufferWriter<byte> _buffer = new(1 << 16);

    /// <summary>Bytes written so far.</summary>
    public int Length => _buffer.WrittenCount;

    /// <summary>The bytes written so far.</summary>
    public ReadOnlySpan<byte> Written => _buffer.WrittenSpan;

    /// <summary>One byte.</summary>
    public void Byte(byte value) => _buffer.Write([value]);

    /// <summary>A little-endian 32-bit unsigned integer.</summary>
    public void UInt32(uint value)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(_buffer.GetSpan(4), value);
        _buffer.Advance(4);
    }

    /// <summary>An unsigned LEB128 varint.</summary>
    public void Varint(ulong value)
    {
        while (value >= 0x80)
        {
            Byte((byte)(value | 0x80));
            value >>= 7;
        }

        Byte((byte)value);
    }

    /// <summary>Raw bytes.</summary>
    public void Bytes(ReadOnlySpan<byte> bytes) => _buffer.Write(bytes);

    /// <summary>A UTF-8 string behind its varint length.</summary>
    public void String(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        Varint((ulong)bytes.Length);
        Bytes(bytes);
    }
}
