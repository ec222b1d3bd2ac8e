using System.IO.Compression;
using Compress.Core.Calibration;
using Compress.Core.Data;
using Compress.Core.Diagnostics;
using Compress.Core.Evaluation;
using Compress.Core.Fidelity;
using Compress.Core.Passes.Pruning;
using Compress.Core.Passes.Quantization;
using Compress.Core.Reports;
using Compress.Core.Torch;
using Compress.Spec;
using Compress.Spec.Methods;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.StateDicts;

/// <summary>
/// <c>Format="torchscript"</c>: a TorchScript archive (<c>torch.jit.save</c>) loaded with TorchSharp's
/// <c>torch.jit.load</c>. Weights are the parameters of rank ≥ 2 matching the step's globs. Methods: magnitude, SNIP
/// and WoodFisher pruning (gradients through the scripted module itself), int8/int4 weight-only onto per-row (int4: per
/// row and block) grids with power-of-two scales, fp16, and <c>finetune</c> by distillation through the module's own
/// autograd (<see cref="ModuleDistiller"/>). The result is saved as TorchScript with the quantized
/// weights held in float16 (exact for the grids) and the archive's entries deflated, which <c>torch.jit.load</c>
/// reads as is; loaders cast the module back to float32 (<c>module.to(float32)</c>). With evaluation data, the
/// original and compressed modules are compared on it and the spec's constraints checked; a failed constraint
/// writes nothing.
/// </summary>
public static class TorchScriptCompressor
{
    private const int Batch = 256;

    /// <summary>
    /// How each pruning method offered for TorchScript (<see cref="MethodDescriptor.Formats"/>) prunes the module's
    /// weights, by method name; a test checks that the two agree.
    /// </summary>
    internal static readonly IReadOnlyDictionary<string, Func<TorchScriptPruning, List<Tensor>>> Pruners = new Dictionary<string, Func<TorchScriptPruning, List<Tensor>>>
    {
        [MagnitudeMethod.Name] = p => SparsityBudget.Apply(p.Weights, p.Masks(p.Weights.Select(SparsityBudget.ScaleFreeMagnitude).ToList(), p.Step.Sparsity)),
        [SnipMethod.Name] = p =>
        {
            var gradients = p.Gradients(Math.Min(128, p.Calibration!.Samples ?? 128));
            p.Progress($"snip: gradients on {gradients.Count} samples (loss against {gradients.Source})");
            var g = gradients.Gradients(0, gradients.Count);
            return SparsityBudget.Apply(p.Weights, p.Masks(p.Weights.Zip(g, (w, d) => (w * d).abs()).ToList(), p.Step.Sparsity));
        },
        [WoodFisherMethod.Name] = p => Passes.SecondOrder.WoodFisher.Prune(p.Gradients(p.Calibration!.Samples), p.Names, p.Weights, p.Step, p.Masks, p.Progress),
    };

    /// <summary>Compresses the archive by the spec through the shared pipeline (<see cref="CompressionPipeline.Run"/>).</summary>
    public static CompressionReport Run(string modelPath, CompressionSpec spec, string outputPath, Action<string>? progress = null) =>
        CompressionPipeline.Run(modelPath, spec, outputPath, progress, measureLatency: false, format: ModelFormats.TorchScript);

    /// <summary>x̂ = s·q, q in ±(2^(b−1) − 1), s the power of two at or above max|w| / (2^(b−1) − 1) per row (int4: per row and block).</summary>
    internal static Tensor PowerOfTwoGrid(Tensor weight, int bits, int block) => OnPowerOfTwoGrid(weight, PowerOfTwoScales(weight, bits, block), bits, block);

    /// <summary>The power-of-two scales of <see cref="PowerOfTwoGrid"/>, [rows, blocks, 1].</summary>
    internal static Tensor PowerOfTwoScales(Tensor weight, int bits, int block)
    {
        var matrix = weight.reshape(weight.shape[0], -1);
        var padded = IntegerGrid.Blocks(matrix, block == 0 ? matrix.shape[1] : block);
        return (padded.abs().amax([2], keepdim: true) / ((1 << (bits - 1)) - 1)).clamp_min(1e-30).log2().ceil().exp2();
    }

    /// <summary><paramref name="weight"/> rounded onto the grid of <paramref name="scales"/> (<see cref="PowerOfTwoScales"/>), codes clamped to ±(2^(b−1) − 1).</summary>
    internal static Tensor OnPowerOfTwoGrid(Tensor weight, Tensor scales, int bits, int block)
    {
        var matrix = weight.reshape(weight.shape[0], -1);
        var padded = IntegerGrid.Blocks(matrix, block == 0 ? matrix.shape[1] : block);
        var top = (1 << (bits - 1)) - 1;
        var grid = (padded / scales).round().clamp(-top, top) * scales;
        return IntegerGrid.Unblocks(grid, matrix.shape[1]).reshape(weight.shape);
    }

    /// <summary><c>compress eval</c> of a TorchScript archive: it against <paramref name="referencePath"/> (or itself) on the data.</summary>
    public static ComparisonMetrics Evaluate(string modelPath, string referencePath, DataSource source, CompressionSpec spec)
    {
        TorchRuntime.EnsureLoaded();
        using var candidate = Load(modelPath);
        using var reference = Load(referencePath);
        candidate.to(ScalarType.Float32);
        reference.to(ScalarType.Float32);
        reference.eval();
        candidate.eval();
        return Compare(reference.call, candidate.call, source, spec);
    }

    /// <summary>Two modules' forward passes (in eval mode) over the data: their one output, judged by its kind as ONNX outputs are.</summary>
    public static ComparisonMetrics Compare(Func<Tensor, Tensor> original, Func<Tensor, Tensor> compressed, DataSource source, CompressionSpec spec)
    {
        var (x, labels) = Samples(source.Path, source.Labels, source.Samples, spec.File);
        using var _ = no_grad();
        var comparison = new OutputComparison("output", labels, FidelityMetrics.KindFor(spec.Evaluation?.Metric));
        for (var start = 0; start < x.shape[0]; start += Batch)
        {
            using var scope = NewDisposeScope();
            var count = (int)Math.Min(Batch, x.shape[0] - start);
            var y = original(x.narrow(0, start, count)).contiguous();
            var z = compressed(x.narrow(0, start, count)).contiguous();
            comparison.Add(new FidelityBatch(y.data<float>().ToArray(), z.data<float>().ToArray(), y.shape, start, count, []), maskedSequence: false);
        }

        return new ComparisonMetrics((int)x.shape[0], "output", [comparison.Result()]);
    }

    /// <summary>A module's outputs on <paramref name="x"/>, <see cref="Batch"/> samples at a time, concatenated as float32 (no gradients).</summary>
    internal static Tensor Outputs(Func<Tensor, Tensor> forward, Tensor x)
    {
        using var _ = no_grad();
        var parts = new List<Tensor>();
        for (var start = 0L; start < x.shape[0]; start += Batch)
        {
            parts.Add(forward(x.narrow(0, start, Math.Min(Batch, x.shape[0] - start))).to_type(ScalarType.Float32));
        }

        return cat(parts, 0).contiguous();
    }

    /// <summary>
    /// The input array of a data file — its only float32 array, or the one named <c>input</c> — and its labels, the
    /// first <paramref name="count"/> rows.
    /// </summary>
    internal static (Tensor X, long[]? Labels) Samples(string path, string? labelsName, int? count, string specFile)
    {
        var arrays = ArrayFile.Read(path);
        var floats = arrays.Where(a => a.Key != labelsName && a.Value.ElementType == Onnx.Proto.TensorProto.Types.DataType.Float).ToList();
        var chosen = floats.Count == 1 ? floats[0] : floats.FirstOrDefault(a => a.Key == "input");
        if (chosen.Value is null)
        {
            throw CompressException.Error(DiagnosticCodes.DataMismatch,
                $"a TorchScript or TorchSharp module takes one float32 array (the only one, or one named 'input'); {path} has {string.Join(", ", arrays.Select(i => $"'{i.Key}' ({i.Value.ElementType})"))}", specFile);
        }

        var array = chosen.Value;
        var rows = (int)Math.Min(count ?? array.Shape[0], array.Shape[0]);
        var x = empty([rows, .. array.Shape.Skip(1)], ScalarType.Float32);
        array.Rows(0, rows).CopyTo(x.bytes);
        var labels = labelsName is null ? null : arrays[labelsName].ToInt64()[..rows];
        return (x, labels);
    }

    internal static jit.ScriptModule<Tensor, Tensor> Load(string path)
    {
        try
        {
            return jit.load<Tensor, Tensor>(path);
        }
        catch (Exception e) when (e is not CompressException)
        {
            throw CompressException.Error(DiagnosticCodes.ModelMalformed, $"torch.jit.load cannot read the TorchScript archive: {e.Message.Split('\n')[0]}", path, inner: e);
        }
    }

    /// <summary>
    /// torch.jit.save to a temporary file, then every entry re-written deflated into the output (atomically); an
    /// archive larger than <paramref name="maxBytes"/> (the source) is refused before it replaces anything.
    /// </summary>
    internal static void Save(jit.ScriptModule<Tensor, Tensor> module, string outputPath, bool half, long maxBytes)
    {
        var full = Path.GetFullPath(outputPath);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        // torch.jit.save names the archive's root folder after the file: a private folder keeps the name the output's
        // own (not a random temporary name), so the same inputs give the same bytes.
        var folder = Path.Combine(Path.GetDirectoryName(full)!, "." + Guid.NewGuid().ToString("N")[..8] + ".jit.tmp");
        Directory.CreateDirectory(folder);
        var saved = Path.Combine(folder, Path.GetFileName(full));
        var packed = full + "." + Guid.NewGuid().ToString("N")[..8] + ".tmp";
        try
        {
            if (half)
            {
                module.to(ScalarType.Float16);
            }

            jit.save(module, saved);
            using (var source = ZipFile.OpenRead(saved))
            using (var target = ZipFile.Open(packed, ZipArchiveMode.Create))
            {
                foreach (var entry in source.Entries)
                {
                    var copy = target.CreateEntry(entry.FullName, CompressionLevel.SmallestSize);
                    copy.LastWriteTime = new DateTimeOffset(2000, 1, 1, 0, 0, 0, TimeSpan.Zero); // same inputs, same bytes
                    using var from = entry.Open();
                    using var to = copy.Open();
                    from.CopyTo(to);
                }
            }

            if (new FileInfo(packed).Length is var bytes && bytes > maxBytes)
            {
                throw CompressException.Error(DiagnosticCodes.ArtifactLarger,
                    $"the compressed archive would be {bytes:N0} bytes, larger than its source ({maxBytes:N0} bytes); nothing was written", outputPath);
            }

            File.Move(packed, full, overwrite: true);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
            File.Delete(packed);
            if (half)
            {
                module.to(ScalarType.Float32);
            }
        }
    }
}

/// <summary>
/// What a TorchScript pruner gets: the step, copies of the weights it prunes and their names, keep-masks by the step's
/// scope, and gradients of the module on the first calibration samples (all of them for null).
/// </summary>
internal sealed record TorchScriptPruning(
    PruneStep Step,
    List<Tensor> Weights,
    IReadOnlyList<string> Names,
    Func<IReadOnlyList<Tensor>, double, List<Tensor>> Masks,
    Func<int?, TorchScriptGradients> Gradients,
    DataSource? Calibration,
    Action<string> Progress);
