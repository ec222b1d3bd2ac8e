using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Compress.Core.Diagnostics;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Core.Data;

/// <summary>
/// NumPy's .npy format (versions 1–3): magic, header dict (<c>descr</c>, <c>fortran_order</c>, <c>shape</c>),
/// then the data. C order only; big-endian numeric data is byte-swapped to little-endian on read.
/// </summary>
public static partial class NpyFormat
{
    private static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    /// <param name="location">The file (and entry) for error messages.</param>
    public static NpyArray Read(Stream stream, string name, string location)
    {
        var prefix = new byte[10];
        if (ReadFully(stream, prefix) < 10 || !prefix.AsSpan(0, 6).SequenceEqual(Magic))
        {
            throw Malformed(location, name, "not a .npy array (bad magic)");
        }

        var major = prefix[6];
        int headerLength;
        int preamble;
        if (major == 1)
        {
            headerLength = BinaryPrimitives.ReadUInt16LittleEndian(prefix.AsSpan(8));
            preamble = 10;
        }
        else if (major is 2 or 3)
        {
            var extra = new byte[2];
            if (ReadFully(stream, extra) < 2)
            {
                throw Malformed(location, name, "truncated header");
            }

            headerLength = checked((int)BinaryPrimitives.ReadUInt32LittleEndian([.. prefix.AsSpan(8, 2), .. extra]));
            preamble = 12;
        }
        else
        {
            throw Malformed(location, name, $"unknown .npy version {major}");
        }

        if (headerLength > 1 << 20)
        {
            throw Malformed(location, name, $"header length {headerLength} is not plausible");
        }

        var headerBytes = new byte[headerLength];
        if (ReadFully(stream, headerBytes) < headerLength)
        {
            throw Malformed(location, name, "truncated header");
        }

        var header = (major == 3 ? Encoding.UTF8 : Encoding.Latin1).GetString(headerBytes);
        var descr = Field(DescrField(), header, location, name, "descr");
        var fortran = Field(FortranField(), header, location, name, "fortran_order");
        var shapeText = Field(ShapeField(), header, location, name, "shape");
        if (fortran == "True")
        {
            throw CompressException.Error(DiagnosticCodes.DataUnsupported,
                $"array '{name}' is stored in Fortran order; save it in C order (numpy.ascontiguousarray) first", location);
        }

        var shape = shapeText.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            .Select(d => long.TryParse(d, NumberStyles.None, CultureInfo.InvariantCulture, out var v) ? v
                : throw Malformed(location, name, $"shape entry '{d}' is not a non-negative integer"))
            .ToArray();
        var (type, width, bigEndian) = ParseDescr(descr, location, name);
        long count;
        try
        {
            count = shape.Aggregate(1L, (a, b) => checked(a * b));
        }
        catch (OverflowException)
        {
            throw Malformed(location, name, $"shape ({shapeText}) is too large");
        }

        var bytes = checked(count * width);
        if (bytes > Array.MaxLength)
        {
            throw CompressException.Error(DiagnosticCodes.DataUnsupported, $"array '{name}' has {bytes} bytes, over the 2 GB an array may hold", location);
        }

        if (stream.CanSeek && stream.Length - stream.Position < bytes)
        {
            throw Malformed(location, name, $"truncated: shape ({shapeText}) needs {bytes} data bytes, the file has {stream.Length - stream.Position}");
        }

        var data = new byte[bytes];
        var read = ReadFully(stream, data);
        if (read < bytes)
        {
            throw Malformed(location, name, $"truncated: shape ({shapeText}) needs {bytes} data bytes after the {preamble + headerLength}-byte header, found {read}");
        }

        if (bigEndian && width > 1)
        {
            for (var i = 0; i < data.Length; i += width)
            {
                data.AsSpan(i, width).Reverse();
            }
        }

        return new NpyArray(name, type, shape, data);
    }

    public static void Write(Stream stream, NpyArray array)
    {
        var descr = array.ElementType switch
        {
            DataType.Float => "<f4", DataType.Double => "<f8", DataType.Float16 => "<f2",
            DataType.Int8 => "|i1", DataType.Uint8 => "|u1", DataType.Int16 => "<i2", DataType.Uint16 => "<u2",
            DataType.Int32 => "<i4", DataType.Uint32 => "<u4", DataType.Int64 => "<i8", DataType.Uint64 => "<u8",
            DataType.Bool => "|b1",
            _ => throw new NotSupportedException($"no .npy type for {array.ElementType}"),
        };
        var shape = array.Shape.Length == 1 ? $"({array.Shape[0]},)" : "(" + string.Join(", ", array.Shape) + ")";
        var header = $"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}";
        var padded = header.PadRight((header.Length + 11 + 63) / 64 * 64 - 11) + "\n"; // total preamble a multiple of 64
        stream.Write(Magic);
        stream.Write([1, 0]);
        Span<byte> length = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(length, (ushort)padded.Length);
        stream.Write(length);
        stream.Write(Encoding.Latin1.GetBytes(padded));
        stream.Write(array.Data);
    }

    private static (DataType Type, int Width, bool BigEndian) ParseDescr(string descr, string location, string name)
    {
        if (descr.Length < 3)
        {
            throw Unsupported(location, name, descr);
        }

        var order = descr[0];
        var kind = descr[1..];
        var big = order == '>';
        if (order is not ('<' or '>' or '|' or '='))
        {
            throw Unsupported(location, name, descr);
        }

        return kind switch
        {
            "f4" => (DataType.Float, 4, big), "f8" => (DataType.Double, 8, big), "f2" => (DataType.Float16, 2, big),
            "i1" => (DataType.Int8, 1, false), "u1" => (DataType.Uint8, 1, false), "b1" => (DataType.Bool, 1, false),
            "i2" => (DataType.Int16, 2, big), "u2" => (DataType.Uint16, 2, big),
            "i4" => (DataType.Int32, 4, big), "u4" => (DataType.Uint32, 4, big),
            "i8" => (DataType.Int64, 8, big), "u8" => (DataType.Uint64, 8, big),
            _ => throw Unsupported(location, name, descr),
        };
    }

    private static string Field(Regex regex, string header, string location, string name, string key)
    {
        var match = regex.Match(header);
        return match.Success ? match.Groups[1].Value : throw Malformed(location, name, $"header has no '{key}' entry");
    }

    private static int ReadFully(Stream stream, Span<byte> buffer)
    {
        var total = 0;
        while (total < buffer.Length)
        {
            var n = stream.Read(buffer[total..]);
            if (n == 0)
            {
                break;
            }

            total += n;
        }

        return total;
    }

    private static CompressException Malformed(string location, string name, string message) =>
        CompressException.Error(DiagnosticCodes.DataMalformed, $"array '{name}': {message}", location);

    private static CompressException Unsupported(string location, string name, string descr) =>
        CompressException.Error(DiagnosticCodes.DataUnsupported,
            $"array '{name}' has element type '{descr}'; supported: float16/32/64, int8/16/32/64, uint8/16/32/64, bool", location);

    [GeneratedRegex(@"'descr'\s*:\s*'([^']*)'")]
    private static partial Regex DescrField();

    [GeneratedRegex(@"'fortran_order'\s*:\s*(True|False)")]
    private static partial Regex FortranField();

    [GeneratedRegex(@"'shape'\s*:\s*\(([^)]*)\)")]
    private static partial Regex ShapeField();
}
