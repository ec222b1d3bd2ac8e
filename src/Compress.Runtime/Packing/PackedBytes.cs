using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace Compress.Runtime.Packing;

/// <summary>Reads a packed file's fields (little-endian, LEB128 varints); any read past the end is a <see cref="PackedModelException"/>.</summary>
public ref struct PackedReader
{
    private readonly ReadOnlySpan<byte> _data;
    private readonly string _what;

    public PackedReader(ReadOnlySpan<byte> data, string what)
    {
        _data = data;
        _what = what;
        Position = 0;
    }

    public int Position { get; private set; }

    public readonly int Remaining => _data.Length - Position;

    public byte Byte() => Bytes(1)[0];

    public uint UInt32() => BinaryPrimitives.ReadUInt32LittleEndian(Bytes(4));

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

    public readonly PackedModelException Corrupt(string why) => new($"{_what} is corrupt: {why}");
}

/// <summary>Writes a packed file's fields in the layout <see cref="PackedReader"/> reads.</summary>
public sealed class PackedWriter
{
    private readonly ArrayBufferWriter<byte> _buffer = new(1 << 16);

    public int Length => _buffer.WrittenCount;

    public ReadOnlySpan<byte> Written => _buffer.WrittenSpan;

    public void Byte(byte value) => _buffer.Write([value]);

    public void UInt32(uint value)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(_buffer.GetSpan(4), value);
        _buffer.Advance(4);
    }

    public void Varint(ulong value)
    {
        while (value >= 0x80)
        {
            Byte((byte)(value | 0x80));
            value >>= 7;
        }

        Byte((byte)value);
    }

    public void Bytes(ReadOnlySpan<byte> bytes) => _buffer.Write(bytes);

    public void String(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        Varint((ulong)bytes.Length);
        Bytes(bytes);
    }
}
