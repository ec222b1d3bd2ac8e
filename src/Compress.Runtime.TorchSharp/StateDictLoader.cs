using Compress.Runtime.StateDicts;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Runtime.TorchSharp;

/// <summary>A state dict that does not fit the module: every mismatch, one per line.</summary>
public sealed class StateDictMismatchException(string path, IReadOnlyList<string> mismatches)
    : InvalidOperationException($"{path} does not fit the module ({mismatches.Count} mismatch{(mismatches.Count == 1 ? "" : "es")}):{Environment.NewLine}  " + string.Join(Environment.NewLine + "  ", mismatches))
{
    /// <summary>Each mismatch: a missing or unexpected name, or a shape difference.</summary>
    public IReadOnlyList<string> Mismatches { get; } = mismatches;
}

/// <summary>Restores weights into a TorchSharp module from a state dict compressed by Compress.Build (or a plain one).</summary>
public static class StateDictLoader
{
    /// <summary>
    /// Decodes the state dict at <paramref name="path"/> and copies every tensor into the module's parameter or buffer
    /// of the same name (converting the element type). Names and shapes are all checked first: any mismatch throws
    /// <see cref="StateDictMismatchException"/> listing every one, and the module is left untouched.
    /// </summary>
    public static void LoadInto(nn.Module module, string path)
    {
        NativeTorch.EnsureLoaded();
        var first = StateDictFile.Read(path);
        var entries = first.Any(e => e.Name == CompressedStateDict.MetadataName) ? CompressedStateDict.Read(path) : first;
        var targets = module.state_dict();
        var mismatches = new List<string>();
        foreach (var entry in entries)
        {
            if (!targets.TryGetValue(entry.Name, out var target))
            {
                mismatches.Add($"'{entry.Name}' [{string.Join(", ", entry.Shape)}] is in the file but not in the module");
            }
            else if (!target.shape.SequenceEqual(entry.Shape))
            {
                mismatches.Add($"'{entry.Name}' is [{string.Join(", ", entry.Shape)}] in the file but [{string.Join(", ", target.shape)}] in the module");
            }
        }

        var names = entries.Select(e => e.Name).ToHashSet(StringComparer.Ordinal);
        mismatches.AddRange(targets.Keys.Where(k => !names.Contains(k)).Select(k => $"'{k}' [{string.Join(", ", targets[k].shape)}] is in the module but not in the file"));
        if (mismatches.Count > 0)
        {
            throw new StateDictMismatchException(path, mismatches);
        }

        using var scope = NewDisposeScope();
        using var _ = no_grad();
        foreach (var entry in entries)
        {
            var source = empty(entry.Shape, TypeOf(entry.Type));
            entry.Data.CopyTo(source.bytes);
            targets[entry.Name].copy_(source);
        }
    }

    private static ScalarType TypeOf(StateDictElementType type) => type switch
    {
        StateDictElementType.Byte => ScalarType.Byte,
        StateDictElementType.Int8 => ScalarType.Int8,
        StateDictElementType.Int16 => ScalarType.Int16,
        StateDictElementType.Int32 => ScalarType.Int32,
        StateDictElementType.Int64 => ScalarType.Int64,
        StateDictElementType.Float16 => ScalarType.Float16,
        StateDictElementType.Float32 => ScalarType.Float32,
        StateDictElementType.Float64 => ScalarType.Float64,
        StateDictElementType.Bool => ScalarType.Bool,
        _ => ScalarType.BFloat16,
    };
}
