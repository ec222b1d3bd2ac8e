using Compress.Core.Diagnostics;
using Compress.Core.Passes.Quantization;
using Compress.Core.Torch;
using Compress.Runtime.StateDicts;
using static TorchSharp.torch;

namespace Compress.Core.StateDicts;

/// <summary>One tensor of a state dict as <c>compress eval</c> sees it: its sparsity and, against a reference, its relative error.</summary>
public sealed record StateDictTensorFigures(string Name, long Parameters, double Sparsity, double? RelativeError);

/// <summary>
/// <c>compress eval</c> of a TorchSharp state dict. A state dict is weights without the module's code, so it cannot be
/// run here; what can be measured is each tensor (decoded when Compress.Build compressed it) against the original's.
/// </summary>
public static class StateDictComparison
{
    public static List<StateDictTensorFigures> Compare(string modelPath, string? referencePath)
    {
        TorchRuntime.EnsureLoaded();
        var candidate = Read(modelPath);
        var reference = referencePath is null ? null : Read(referencePath).ToDictionary(t => t.Name, StringComparer.Ordinal);
        var figures = new List<StateDictTensorFigures>();
        foreach (var entry in candidate.Where(t => t.Type == StateDictElementType.Float32))
        {
            using var scope = NewDisposeScope();
            var values = StateDictCompressor.ToTorch(entry);
            double? error = null;
            if (reference is not null)
            {
                if (!reference.TryGetValue(entry.Name, out var original) || !original.Shape.SequenceEqual(entry.Shape))
                {
                    throw CompressException.Error(DiagnosticCodes.DataMismatch, $"the reference has no float tensor '{entry.Name}' of shape [{string.Join(", ", entry.Shape)}]", referencePath);
                }

                error = WeightQuantization.RelativeError(StateDictCompressor.ToTorch(original), values);
            }

            figures.Add(new StateDictTensorFigures(entry.Name, entry.Count, 1 - values.count_nonzero().item<long>() / (double)Math.Max(1, entry.Count), error));
        }

        return figures;
    }

    /// <summary>The tensors of a state dict (one read of the file), decoded when Compress.Build wrote it.</summary>
    private static IReadOnlyList<StateDictTensor> Read(string path)
    {
        var stored = StateDictCompressor.ReadFile(path);
        try
        {
            return stored.Any(t => t.Name == CompressedStateDict.MetadataName) ? CompressedStateDict.Decode(stored, path) : stored;
        }
        catch (InvalidDataException e)
        {
            throw CompressException.Error(DiagnosticCodes.ModelMalformed, $"not a readable compressed state dict: {e.Message}", path, inner: e);
        }
    }
}
