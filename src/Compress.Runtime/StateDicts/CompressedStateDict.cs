using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Compress.Runtime.StateDicts;

/// <summary>How one tensor is stored in a compressed state dict.</summary>
public sealed record StoredTensor
{
    /// <summary>The state-dict key.</summary>
    public string Name { get; init; } = "";

    /// <summary>
    /// <c>dense</c> (as it was), <c>fp16</c>, <c>int8</c> (per row: q·scale), <c>int4</c> (per row and block of
    /// <see cref="BlockSize"/>: (q − 8)·scale, two codes a byte, low nibble first), <c>bitmask-float32</c> or
    /// <c>bitmask-int8</c> (one bit per value, the nonzero values in order; int8 values scaled per row).
    /// </summary>
    public string Encoding { get; init; } = "dense";

    /// <summary>The tensor's shape as the module has it.</summary>
    public long[] Shape { get; init; } = [];

    /// <summary>Values per int4 block along a row.</summary>
    public int BlockSize { get; init; }
}

/// <summary>The metadata entry of a compressed state dict.</summary>
public sealed record CompressedStateDictInfo
{
    /// <summary>Format version; this reader knows 1.</summary>
    public int Version { get; init; } = 1;

    /// <summary>Every tensor of the original state dict, in order.</summary>
    public List<StoredTensor> Tensors { get; init; } = [];
}

/// <summary>
/// The artifact Compress.Build writes for a TorchSharp state dict: itself a TorchSharp state-dict file, whose first
/// entry <c>__compress_build__</c> (uint8) holds JSON describing how each original tensor is stored (its values in
/// the entry of the same name, row scales in <c>name.__scales</c>, a bit mask in <c>name.__mask</c>). Reading gives
/// back every original tensor, float weights decoded to float32.
/// </summary>
public static class CompressedStateDict
{
    /// <summary>Name of the metadata entry.</summary>
    public const string MetadataName = "__compress_build__";

    /// <summary>JSON options of the metadata.</summary>
    public static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingDefault };

    /// <summary>Every tensor of the original state dict, decoded, in the original order.</summary>
    public static IReadOnlyList<StateDictTensor> Read(string path) => Decode(StateDictFile.Read(path), path);

    /// <summary>Every tensor of the original state dict from the entries of a compressed one already read from <paramref name="path"/>.</summary>
    public static IReadOnlyList<StateDictTensor> Decode(IReadOnlyList<StateDictTensor> stored, string path)
    {
        var entries = stored.ToDictionary(e => e.Name, StringComparer.Ordinal);
        if (!entries.TryGetValue(MetadataName, out var metadata))
        {
            throw new InvalidDataException($"{path}: not a Compress.Build state dict (no '{MetadataName}' entry)");
        }

        var info = JsonSerializer.Deserialize<CompressedStateDictInfo>(metadata.Data, Json)
            ?? throw new InvalidDataException($"{path}: empty '{MetadataName}' entry");
        if (info.Version != 1)
        {
            throw new InvalidDataException($"{path}: compressed state-dict version {info.Version}; this Compress.Runtime reads version 1");
        }

        StateDictTensor Entry(string name) => entries.TryGetValue(name, out var e) ? e : throw new InvalidDataException($"{path}: entry '{name}' is missing");
        return info.Tensors.Select(t => Decode(t, Entry)).ToList();
    }

    private static StateDictTensor Decode(StoredTensor stored, Func<string, StateDictTensor> entry)
    {
        var values = entry(stored.Name);
        if (stored.Encoding == "dense")
        {
            return values;
        }

        var count = stored.Shape.Aggregate(1L, (a, b) => a * b);
        var rows = stored.Shape.Length == 0 ? 1 : stored.Shape[0];
        var perRow = rows == 0 ? 0 : count / rows;
        var result = new float[count];
        switch (stored.Encoding)
        {
            case "fp16":
                var halves = MemoryMarshal.Cast<byte, Half>(values.Data);
                for (var i = 0; i < result.Length; i++)
                {
                    result[i] = (float)halves[i];
                }

                break;
            case "int8":
                var scales = Floats(entry(stored.Name + ".__scales"));
                var codes = MemoryMarshal.Cast<byte, sbyte>(values.Data);
                for (var i = 0; i < result.Length; i++)
                {
                    result[i] = codes[i] * scales[(int)(i / perRow)];
                }

                break;
            case "int4":
                var blockScales = Floats(entry(stored.Name + ".__scales"));
                var blocks = (perRow + stored.BlockSize - 1) / stored.BlockSize;
                var packedRow = blocks * stored.BlockSize / 2;
                for (long r = 0; r < rows; r++)
                {
                    for (long c = 0; c < perRow; c++)
                    {
                        var b = values.Data[r * packedRow + c / 2];
                        var q = (c & 1) == 0 ? b & 0x0F : b >> 4;
                        result[r * perRow + c] = (q - 8) * blockScales[(int)(r * blocks + c / stored.BlockSize)];
                    }
                }

                break;
            case "bitmask-float32":
            case "bitmask-int8":
                var mask = entry(stored.Name + ".__mask").Data;
                var int8 = stored.Encoding == "bitmask-int8";
                var rowScales = int8 ? Floats(entry(stored.Name + ".__scales")) : default;
                var floats = int8 ? default : Floats(values);
                var next = 0;
                for (var i = 0; i < result.Length; i++)
                {
                    if ((mask[i >> 3] & (1 << (i & 7))) != 0)
                    {
                        result[i] = int8 ? (sbyte)values.Data[next++] * rowScales[(int)(i / perRow)] : floats[next++];
                    }
                }

                break;
            default:
                throw new InvalidDataException($"'{stored.Name}' is stored as '{stored.Encoding}', which this Compress.Runtime does not read");
        }

        return new StateDictTensor(stored.Name, StateDictElementType.Float32, stored.Shape, MemoryMarshal.AsBytes(result.AsSpan()).ToArray());
    }

    private static ReadOnlySpan<float> Floats(StateDictTensor tensor) =>
        tensor.Type == StateDictElementType.Float32 ? MemoryMarshal.Cast<byte, float>(tensor.Data)
            : throw new InvalidDataException($"'{tensor.Name}' should hold float32 values, not {tensor.Type}");
}
