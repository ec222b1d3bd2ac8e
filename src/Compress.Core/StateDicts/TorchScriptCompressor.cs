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
/// row and block) grids with power-of-two scales, fp16. The result is saved as TorchScript with the quantized
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

    public static CompressionReport Run(string modelPath, CompressionSpec spec, string outputPath, Action<string>? progress = null)
    {
        progress ??= _ => { };
        TorchRuntime.EnsureLoaded();
        TorchFormats.CheckOutput(modelPath, outputPath);
        TorchFormats.Refuse(spec, ModelFormat.TorchScript, "TorchScript", constraints: true);
        using var original = Load(modelPath);
        using var module = Load(modelPath);
        var parameters = module.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var records = new Dictionary<string, LayerFigures>(StringComparer.Ordinal);
        var halfStorage = false;
        using (var scope = NewDisposeScope())
        {
            var originals = parameters.ToDictionary(p => p.Key, p => p.Value.detach().clone());
            var bits = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (var step in spec.Steps)
            {
                var names = parameters.Where(p => p.Value.dim() >= 2 && Passes.WeightSelection.NameMatches(p.Key, step)).Select(p => p.Key).ToList();
                switch (step)
                {
                    case PruneStep prune:
                        var current = names.Select(n => parameters[n].detach().clone()).ToList();
                        TorchScriptGradients Gradients(int? count)
                        {
                            var (x, labels) = Samples(spec.Calibration!.Path, spec.Calibration.Labels, count, spec.File);
                            return new TorchScriptGradients(module, parameters, names, x, labels is null ? null : tensor(labels));
                        }

                        var pruned = Pruners[MethodCatalog.Of(prune).Name](new TorchScriptPruning(
                            prune, current, names, (scores, sparsity) => SparsityBudget.Masks(scores, sparsity, prune), Gradients, spec.Calibration, progress));

                        using (no_grad())
                        {
                            for (var i = 0; i < names.Count; i++)
                            {
                                parameters[names[i]].copy_(pruned[i]);
                            }
                        }

                        progress($"prune/{prune.Method}: {names.Count} weights of {Path.GetFileName(modelPath)}");
                        break;
                    case QuantizeStep quantize:
                        using (no_grad())
                        {
                            foreach (var name in names)
                            {
                                var p = parameters[name];
                                p.copy_(quantize.Weights switch
                                {
                                    "int8" => PowerOfTwoGrid(p, 8, 0),
                                    "int4" => PowerOfTwoGrid(p, 4, quantize.BlockSize),
                                    _ => p.to_type(ScalarType.Float16).to_type(ScalarType.Float32),
                                });
                                bits[name] = quantize.Weights switch { "int8" => 8, "int4" => 4, _ => 16 };
                            }
                        }

                        halfStorage = true;
                        progress($"quantize/{quantize.Weights}: {names.Count} weights of {Path.GetFileName(modelPath)}");
                        break;
                }
            }

            foreach (var (name, value) in parameters.Where(p => p.Value.dim() >= 2 && (bits.ContainsKey(p.Key) || p.Value.eq(0).any().item<bool>())))
            {
                var zeros = value.eq(0).sum().item<long>();
                records[name] = new LayerFigures(name, name, "torchscript", value.numel(), zeros / (double)value.numel(), bits.GetValueOrDefault(name, 32),
                    bits.TryGetValue(name, out var b) ? (b == 16 ? "fp16" : $"int{b} power-of-two grid, stored float16") : "float32",
                    WeightQuantization.RelativeError(originals[name], value.detach()));
            }
        }

        ComparisonMetrics? metrics = null;
        List<ConstraintResult> constraints = [];
        List<CompressDiagnostic> warnings = [];
        var evaluation = spec.Evaluation ?? spec.Calibration;
        if (evaluation is not null)
        {
            progress($"validate: original vs compressed on {Path.GetFileName(evaluation.Path)}");
            metrics = Compare(original, module, evaluation, spec);
            (constraints, warnings) = FidelityGate.Check(spec, metrics, FidelityGate.WorstLayers(records.Values.Select(r => (r.Node, r.Format, r.RelativeError))), outputPath);
        }

        var originalBytes = new FileInfo(modelPath).Length;
        Save(module, outputPath, halfStorage, originalBytes);
        var compressedBytes = new FileInfo(outputPath).Length;
        var count = parameters.Values.Sum(p => p.numel());
        var size = new SizeFigures(originalBytes, compressedBytes, count, compressedBytes / (double)originalBytes,
            count == 0 ? 0 : records.Values.Sum(r => r.Sparsity * r.Parameters) / count);
        return new CompressionReport(Path.GetFullPath(modelPath), Path.GetFullPath(outputPath), spec.File,
            spec.Steps.Select(Passes.PassRegistry.KeyOf).ToList(), size, records.Values.ToList(),
            metrics, constraints, null,
            halfStorage ? ["TorchScript weights stored as float16 (exact for the quantization grids): load with torch.jit.load, then module.to(float32) — the generated wrapper does"] : [],
            Warnings: warnings);
    }

    /// <summary>x̂ = s·q, q in ±(2^(b−1) − 1), s the power of two at or above max|w| / (2^(b−1) − 1) per row (int4: per row and block).</summary>
    private static Tensor PowerOfTwoGrid(Tensor weight, int bits, int block)
    {
        var matrix = weight.reshape(weight.shape[0], -1);
        var padded = IntegerGrid.Blocks(matrix, block == 0 ? matrix.shape[1] : block);
        var top = (1 << (bits - 1)) - 1;
        var scales = (padded.abs().amax([2], keepdim: true) / top).clamp_min(1e-30).log2().ceil().exp2();
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
        return Compare(reference, candidate, source, spec);
    }

    /// <summary>Both modules over the data (their one output, judged by its kind as ONNX outputs are).</summary>
    public static ComparisonMetrics Compare(jit.ScriptModule<Tensor, Tensor> original, jit.ScriptModule<Tensor, Tensor> compressed, DataSource source, CompressionSpec spec)
    {
        var (x, labels) = Samples(source.Path, source.Labels, source.Samples, spec.File);
        original.eval();
        compressed.eval();
        using var _ = no_grad();
        var comparison = new OutputComparison("output", labels, FidelityMetrics.KindFor(spec.Evaluation?.Metric));
        for (var start = 0; start < x.shape[0]; start += Batch)
        {
            using var scope = NewDisposeScope();
            var count = (int)Math.Min(Batch, x.shape[0] - start);
            var y = original.call(x.narrow(0, start, count)).contiguous();
            var z = compressed.call(x.narrow(0, start, count)).contiguous();
            comparison.Add(new FidelityBatch(y.data<float>().ToArray(), z.data<float>().ToArray(), y.shape, start, count, []), maskedSequence: false);
        }

        return new ComparisonMetrics((int)x.shape[0], "output", [comparison.Result()]);
    }

    /// <summary>
    /// The input array of a data file — its only float32 array, or the one named <c>input</c> — and its labels, the
    /// first <paramref name="count"/> rows.
    /// </summary>
    private static (Tensor X, long[]? Labels) Samples(string path, string? labelsName, int? count, string specFile)
    {
        var arrays = ArrayFile.Read(path);
        var floats = arrays.Where(a => a.Key != labelsName && a.Value.ElementType == Onnx.Proto.TensorProto.Types.DataType.Float).ToList();
        var chosen = floats.Count == 1 ? floats[0] : floats.FirstOrDefault(a => a.Key == "input");
        if (chosen.Value is null)
        {
            throw CompressException.Error(DiagnosticCodes.DataMismatch,
                $"a TorchScript module takes one float32 array (the only one, or one named 'input'); {path} has {string.Join(", ", arrays.Select(i => $"'{i.Key}' ({i.Value.ElementType})"))}", specFile);
        }

        var array = chosen.Value;
        var rows = (int)Math.Min(count ?? array.Shape[0], array.Shape[0]);
        var x = empty([rows, .. array.Shape.Skip(1)], ScalarType.Float32);
        array.Rows(0, rows).CopyTo(x.bytes);
        var labels = labelsName is null ? null : arrays[labelsName].ToInt64()[..rows];
        return (x, labels);
    }

    private static jit.ScriptModule<Tensor, Tensor> Load(string path)
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
    private static void Save(jit.ScriptModule<Tensor, Tensor> module, string outputPath, bool half, long maxBytes)
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
