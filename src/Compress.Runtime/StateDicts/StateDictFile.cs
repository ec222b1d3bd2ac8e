using System.Text;

namespace Compress.Runtime.StateDicts;

/// <summary>Element types of TorchSharp's state-dict format (the values of TorchSharp's <c>ScalarType</c>).</summary>
public enum StateDictElementType
{
    /// <summary>uint8</summary>
    Byte = 0,
    /// <summary>int8</summary>
    Int8 = 1,
    /// <summary>int16</summary>
    Int16 = 2,
    /// <summary>int32</summary>
    Int32 = 3,
    /// <summary>int64</summary>
    Int64 = 4,
    /// <summary>IEEE half</summary>
    Float16 = 5,
    /// <summary>float</summary>
    Float32 = 6,
    /// <summary>double</summary>
    Float64 = 7,
    /// <summary>bool (one byte)</summary>
    Bool = 11,
    /// <summary>bfloat16</summary>
    BFloat16 = 15,
}

/// <summary>One named tensor of a state dict: element type, shape and raw little-endian bytes.</summary>
public sealed record StateDictTensor(string Name, StateDictElementType Type, long[] Shape, byte[] Data)
{
    /// <summary>Number of values.</summary>
    public long Count => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// TorchSharp's state-dict file, as <c>Module.save</c> writes and <c>Module.load</c> reads it: an unsigned LEB128
/// entry count, then per entry the name (LEB128 byte length + UTF-8), the element type, the rank and each
/// dimension (LEB128 each), and the raw bytes. Read without libtorch; every length is checked against the file.
/// </summary>
public static class StateDictFile
{
    private const int MaxRank = 16;

    /// <summary>Reads a state-dict file; <see cref="InvalidDataException"/> names the byte where it goes wrong.</summary>
    public static IReadOnlyList<StateDictTensor> Read(string path)
    {
        using var stream = File.OpenRead(path);
        return Read(stream, path);
    }

    /// <summary>Reads a state dict from <paramref name="stream"/>; <paramref name="source"/> names it in errors.</summary>
    public static IReadOnlyList<StateDictTensor> Read(Stream stream, string source)
    {
        var reader = new BinaryReader(stream);
        var count = Leb128(reader, source, "entry count");
        var entries = new List<StateDictTensor>();
        for (long i = 0; i < count; i++)
        {
            var nameLength = Leb128(reader, source, "name length");
            var name = Encoding.UTF8.GetString(Bytes(reader, nameLength, source, "a name"));
            var typeCode = Leb128(reader, source, $"the element type of '{name}'");
            if (!Enum.IsDefined(typeof(StateDictElementType), (int)typeCode) || typeCode > int.MaxValue)
            {
                throw Malformed(source, stream, $"'{name}' has element type code {typeCode}, not one TorchSharp writes");
            }

            var type = (StateDictElementType)typeCode;
            var rank = Leb128(reader, source, $"the rank of '{name}'");
            if (rank > MaxRank)
            {
                throw Malformed(source, stream, $"'{name}' has rank {rank}");
            }

            var shape = new long[rank];
            for (var d = 0; d < rank; d++)
            {
                shape[d] = Leb128(reader, source, $"a dimension of '{name}'");
            }

            var elements = shape.Aggregate(1L, (a, b) => b == 0 ? 0 : a > long.MaxValue / b ? throw Malformed(source, stream, $"'{name}' has too many elements") : a * b);
            entries.Add(new StateDictTensor(name, type, shape, Bytes(reader, elements * ElementSize(type), source, $"the values of '{name}'")));
        }

        if (stream.CanSeek && stream.Position != stream.Length)
        {
            throw Malformed(source, stream, $"{stream.Length - stream.Position} bytes after the last of {count} entries");
        }

        return entries;
    }

    /// <summary>Writes to a temporary file next to <paramref name="path"/>, then moves it into place.</summary>
    public static void Write(string path, IEnumerable<StateDictTensor> entries)
    {
        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        var temporary = full + "." + Guid.NewGuid().ToString("N")[..8] + ".tmp";
        try
        {
            using (var stream = File.Create(temporary))
            {
                Write(stream, entries);
            }

            File.Move(temporary, full, overwrite: true);
        }
        finally
        {
            File.Delete(temporary);
        }
    }

    /// <summary>Writes the entries in order to <paramref name="stream"/>.</summary>
    public static void Write(Stream stream, IEnumerable<StateDictTensor> entries)
    {
        var list = entries.ToList();
        var writer = new BinaryWriter(stream);
        WriteLeb128(writer, list.Count);
        foreach (var entry in list)
        {
            var name = Encoding.UTF8.GetBytes(entry.Name);
            WriteLeb128(writer, name.Length);
            writer.Write(name);
            WriteLeb128(writer, (long)entry.Type);
            WriteLeb128(writer, entry.Shape.Length);
            foreach (var dimension in entry.Shape)
            {
                WriteLeb128(writer, dimension);
            }

            if (entry.Data.LongLength != entry.Count * ElementSize(entry.Type))
            {
                throw new ArgumentException($"'{entry.Name}' holds {entry.Data.LongLength} bytes for {entry.Count} {entry.Type} values");
            }

            writer.Write(entry.Data);
        }

        writer.Flush();
    }

    /// <summary>Bytes per value.</summary>
    public static int ElementSize(StateDictElementType type) => type switch
    {
        StateDictElementType.Byte or StateDictElementType.Int8 or StateDictElementType.Bool => 1,
        StateDictElementType.Int16 or StateDictElementType.Float16 or StateDictElementType.BFloat16 => 2,
        StateDictElementType.Int32 or StateDictElementType.Float32 => 4,
        _ => 8,
    };

    private static long Leb128(BinaryReader reader, string source, string what)
    {
        long value = 0;
        for (var shift = 0; shift < 64; shift += 7)
        {
            int b;
            try
            {
                b = reader.ReadByte();
            }
            catch (EndOfStreamException)
            {
                throw Malformed(source, reader.BaseStream, $"the file ends inside {what}");
            }

            value |= (long)(b & 0x7F) << shift;
            if ((b & 0x80) == 0)
            {
                return value >= 0 ? value : throw Malformed(source, reader.BaseStream, $"{what} is negative");
            }
        }

        throw Malformed(source, reader.BaseStream, $"{what} is not a valid LEB128 number");
    }

    private static byte[] Bytes(BinaryReader reader, long count, string source, string what)
    {
        var stream = reader.BaseStream;
        if (count > int.MaxValue || (stream.CanSeek && count > stream.Length - stream.Position))
        {
            throw Malformed(source, stream, $"{what} needs {count} bytes; the file is truncated");
        }

        var bytes = reader.ReadBytes((int)count);
        return bytes.Length == count ? bytes : throw Malformed(source, stream, $"{what} needs {count} bytes; the file is truncated");
    }

    private static InvalidDataException Malformed(string source, Stream stream, string message) =>
        new($"{source}: not a TorchSharp state dict at byte {(stream.CanSeek ? stream.Position : -1)}: {message}");

    private static void WriteLeb128(BinaryWriter writer, long value)
    {
        var v = (ulong)value;
        do
        {
            var b = (byte)(v & 0x7F);
            v >>= 7;
            writer.Write(v == 0 ? b : (byte)(b | 0x80));
        }
        while (v != 0);
    }
}
