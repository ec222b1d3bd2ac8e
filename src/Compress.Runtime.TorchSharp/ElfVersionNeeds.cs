using System.Buffers.Binary;
using System.Text;

namespace Compress.Runtime.TorchSharp;

/// <summary>
/// Reads and edits the version requirements (<c>.gnu.version_r</c>) of a 64-bit little-endian ELF shared
/// library, and tells which dynamic symbols depend on each required version. Used to make TorchSharp's native
/// library load on systems whose libstdc++ is older than the one it was built against.
/// </summary>
internal sealed class ElfVersionNeeds
{
    private const uint ShtDynsym = 11;
    private const uint ShtGnuVersym = 0x6fffffff;
    private const uint ShtGnuVerneed = 0x6ffffffe;
    private const ushort VerFlagWeak = 0x2;

    private readonly byte[] _image;
    private readonly List<Requirement> _requirements = [];
    private readonly Dictionary<ushort, List<string>> _symbolsByVersion = [];

    private ElfVersionNeeds(byte[] image)
    {
        _image = image;
        Parse();
    }

    public sealed record Requirement(string Library, string Version, ushort Index, int FlagsOffset, bool IsWeak);

    public IReadOnlyList<Requirement> Requirements => _requirements;

    public static ElfVersionNeeds Read(byte[] image)
    {
        if (image.Length < 64 || image[0] != 0x7f || image[1] != (byte)'E' || image[2] != (byte)'L' || image[3] != (byte)'F'
            || image[4] != 2 || image[5] != 1)
        {
            throw new InvalidDataException("not a 64-bit little-endian ELF file");
        }

        return new ElfVersionNeeds(image);
    }

    /// <summary>Names of the dynamic symbols bound to a required version.</summary>
    public IReadOnlyList<string> SymbolsOf(Requirement requirement) =>
        _symbolsByVersion.TryGetValue(requirement.Index, out var list) ? list : [];

    /// <summary>Returns a copy of the image in which <paramref name="requirement"/> is weak: a missing version is then not fatal at load.</summary>
    public byte[] WithWeak(Requirement requirement)
    {
        var copy = (byte[])_image.Clone();
        var flags = BinaryPrimitives.ReadUInt16LittleEndian(copy.AsSpan(requirement.FlagsOffset));
        BinaryPrimitives.WriteUInt16LittleEndian(copy.AsSpan(requirement.FlagsOffset), (ushort)(flags | VerFlagWeak));
        return copy;
    }

    private void Parse()
    {
        var span = _image.AsSpan();
        var sectionOffset = (long)BinaryPrimitives.ReadUInt64LittleEndian(span[0x28..]);
        int entrySize = BinaryPrimitives.ReadUInt16LittleEndian(span[0x3A..]);
        int count = BinaryPrimitives.ReadUInt16LittleEndian(span[0x3C..]);
        var sections = new List<(uint Type, long Offset, long Size, uint Link, long EntSize)>();
        for (var i = 0; i < count; i++)
        {
            var header = span.Slice(checked((int)(sectionOffset + i * entrySize)), entrySize);
            sections.Add((BinaryPrimitives.ReadUInt32LittleEndian(header[4..]),
                (long)BinaryPrimitives.ReadUInt64LittleEndian(header[0x18..]),
                (long)BinaryPrimitives.ReadUInt64LittleEndian(header[0x20..]),
                BinaryPrimitives.ReadUInt32LittleEndian(header[0x28..]),
                (long)BinaryPrimitives.ReadUInt64LittleEndian(header[0x38..])));
        }

        foreach (var section in sections.Where(s => s.Type == ShtGnuVerneed))
        {
            var strings = sections[(int)section.Link].Offset;
            var need = section.Offset;
            while (true)
            {
                int auxCount = BinaryPrimitives.ReadUInt16LittleEndian(span[(int)(need + 2)..]);
                var library = ReadString(strings + BinaryPrimitives.ReadUInt32LittleEndian(span[(int)(need + 4)..]));
                var aux = need + BinaryPrimitives.ReadUInt32LittleEndian(span[(int)(need + 8)..]);
                for (var k = 0; k < auxCount; k++)
                {
                    var flags = BinaryPrimitives.ReadUInt16LittleEndian(span[(int)(aux + 4)..]);
                    var index = BinaryPrimitives.ReadUInt16LittleEndian(span[(int)(aux + 6)..]);
                    var name = ReadString(strings + BinaryPrimitives.ReadUInt32LittleEndian(span[(int)(aux + 8)..]));
                    _requirements.Add(new Requirement(library, name, index, (int)(aux + 4), (flags & VerFlagWeak) != 0));
                    aux += BinaryPrimitives.ReadUInt32LittleEndian(span[(int)(aux + 12)..]);
                }

                var next = BinaryPrimitives.ReadUInt32LittleEndian(span[(int)(need + 12)..]);
                if (next == 0)
                {
                    break;
                }

                need += next;
            }
        }

        var dynsym = sections.FirstOrDefault(s => s.Type == ShtDynsym);
        var versym = sections.FirstOrDefault(s => s.Type == ShtGnuVersym);
        if (dynsym.EntSize == 0 || versym.Size == 0)
        {
            return;
        }

        var symbolStrings = sections[(int)dynsym.Link].Offset;
        var symbols = dynsym.Size / dynsym.EntSize;
        for (long i = 0; i < symbols; i++)
        {
            var version = (ushort)(BinaryPrimitives.ReadUInt16LittleEndian(span[(int)(versym.Offset + i * 2)..]) & 0x7fff);
            if (version < 2)
            {
                continue;
            }

            var nameOffset = BinaryPrimitives.ReadUInt32LittleEndian(span[(int)(dynsym.Offset + i * dynsym.EntSize)..]);
            if (!_symbolsByVersion.TryGetValue(version, out var list))
            {
                _symbolsByVersion[version] = list = [];
            }

            list.Add(ReadString(symbolStrings + nameOffset));
        }
    }

    private string ReadString(long offset)
    {
        var start = (int)offset;
        var end = Array.IndexOf(_image, (byte)0, start);
        return Encoding.ASCII.GetString(_image, start, end - start);
    }
}
