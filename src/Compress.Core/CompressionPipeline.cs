using Compress.Core.Allocation;
using Compress.Core.Diagnostics;
using Compress.Core.Evaluation;
using Compress.Core.Fidelity;
using Compress.Core.Formats;
using Compress.Core.Passes;
using Compress.Core.Reports;
using Compress.Spec;

namespace Compress.Core;

/// <summary>
/// <c>compress run</c>: open the model as its format, apply the spec's steps in order, finish the working copy, check it
/// against the original and the spec's constraints, and only then write the output (atomically) and the report. A
/// failed constraint writes nothing. Every format goes through this one step loop, fidelity gate, size check and report;
/// what a format does besides its steps (ONNX: graph preparation, sparse storage, the load check) is the format's
/// (<see cref="IModelFormat"/>), and what only some formats can do — run on data, measure latency, compress again for
/// <c>"sparsity": "auto"</c> — are capabilities the pipeline asks for.
/// </summary>
public static class CompressionPipeline
{
    /// <summary>Batch-1 time over the source's past which a run without <c>maxLatencyRatio</c> warns (CMP0088).</summary>
    private const double SlowerWarningRatio = 1.10;

    /// <summary>
    /// …and by at least this many milliseconds: a model that runs in tens of microseconds (the sample's packed MLP, 0.018 →
    /// 0.028 ms) differs by less than an app notices and than such timings resolve.
    /// </summary>
    private const double SlowerWarningMs = 0.05;

    /// <param name="format"><see cref="ModelFormats.Onnx"/> (the default), <see cref="ModelFormats.TorchScript"/> or <see cref="ModelFormats.TorchSharp"/>.</param>
    /// <param name="measureLatency">Measures latency where the format can (<see cref="ITimedFormat"/>) and the spec names data.</param>
    public static CompressionReport Run(string modelPath, CompressionSpec spec, string outputPath, Action<string>? progress = null, bool measureLatency = true,
        string format = ModelFormats.Onnx)
    {
        progress ??= _ => { };
        if (Path.GetFullPath(outputPath) == Path.GetFullPath(modelPath))
        {
            throw CompressException.Error(DiagnosticCodes.OutputInvalid, "the output would overwrite the input model; choose another --output", outputPath);
        }

        using var opened = ModelFormats.Open(format, modelPath, spec, progress);
        var data = spec.Evaluation ?? spec.Calibration;
        // The work after each step of a single compression (a search's rounds are not staged): multiply-adds, and batch-1
        // latency when latency is measured.
        var steps = new List<StageFigures>();
        Action<string>? stage = data is not null && opened is IStagedFormat staged
            ? name => steps.Add(new StageFigures(name, staged.MultiplyAdds(source: false), measureLatency ? staged.Batch1Ms() : null))
            : null;
        var run = spec.Steps.OfType<PruneStep>().FirstOrDefault(p => p.Auto) is { } auto
            ? AutoSparsity.Run(auto, spec, data!, opened as IReopenableFormat ?? throw new InvalidOperationException($"'sparsity': 'auto' on a {format} model"),
                model => Compress(model, spec, outputPath, progress), progress, outputPath)
            : AllocationSearch.Searches(spec, data, opened)
            ? AllocationSearch.Run(spec, data!, (IReopenableFormat)opened, model => Compress(model, spec, outputPath, progress), progress, outputPath)
            : CompressOnce(opened, spec, data, outputPath, progress, stage);
        using var searched = run.Model == opened ? null : run.Model; // a later round of the search: the pipeline disposes it too

        var model = run.Model;
        var layers = model.Layers();
        var (constraints, fidelityWarnings) = run.Metrics is { } metrics
            ? FidelityGate.Check(spec, metrics, FidelityGate.WorstLayers(layers.Select(l => (l.Node, l.Format, l.RelativeError))), outputPath)
            : ([], []);
        var notes = new List<string>();
        if (run.Search is { } search)
        {
            notes.Add(AutoSparsity.Note(search));
        }

        var notChecked = DataFreeWarning.For(spec, run.Metrics);
        if (run.Metrics is null && model is IRunnableFormat && FidelityGate.Unmeasured(spec) is var unmeasured && notChecked is null)
        {
            notes.Add(unmeasured);
        }

        var compressedBytes = model.Save(outputPath);
        if (spec.Steps.OfType<AllocateStep>().FirstOrDefault() is { } allocate && (allocate.Bytes ?? allocate.Size * model.SourceBytes) is { } budget && compressedBytes > budget)
        {
            // One round has no measurement to correct the size estimate by (more rounds hold the budget or fail with CMP0050).
            fidelityWarnings.Add(CompressDiagnostic.Warning(DiagnosticCodes.AllocationOverBudget,
                $"the artifact is {compressedBytes:N0} bytes, {compressedBytes / budget - 1:P1} over the allocation's budget of {budget:N0} (spec line {allocate.Line}): " +
                "the size estimate was not corrected by a measured round; give 'rounds' of 2 or more to hold the budget", outputPath));
        }
        if (notChecked is not null)
        {
            fidelityWarnings.Add(notChecked);
        }

        LatencyFigures? latency = null;
        if (measureLatency && data is not null && model is ITimedFormat timed)
        {
            progress("latency: batch 1 and batch N, one thread");
            latency = timed.MeasureLatency(data);
            if (latency.CompressedIsSlower)
            {
                notes.Add("the compressed model runs slower than the original on this machine (see latency)");
                if (SlowerWarning(latency, spec, outputPath) is { } slower)
                {
                    fidelityWarnings.Add(slower);
                }
            }
        }

        IReadOnlyList<StageFigures>? stages = data is not null && model is IStagedFormat work
            ? [new StageFigures("source", work.MultiplyAdds(source: true), latency?.OriginalBatch1Ms), .. steps,
               new StageFigures("written", work.MultiplyAdds(source: false), latency?.CompressedBatch1Ms)]
            : null;
        if (stages?.All(s => s.MultiplyAdds is null && s.Batch1Ms is null) == true)
        {
            stages = null; // nothing could be counted or timed (a model over the size counted, or with external data)
        }

        var parameters = model.SourceParameters;
        var size = new SizeFigures(model.SourceBytes, compressedBytes, parameters, compressedBytes / (double)model.SourceBytes,
            parameters == 0 ? 0 : layers.Sum(l => l.Sparsity * l.Parameters) / parameters);
        return new CompressionReport(Path.GetFullPath(modelPath), Path.GetFullPath(outputPath), spec.File, spec.Steps.Select(PassRegistry.KeyOf).ToList(),
            size, layers, run.Metrics, constraints, latency, [.. model.Notes, .. notes], run.Search, [.. run.Warnings, .. fidelityWarnings],
            model.Allocation is { } allocation && run.Rounds is { } rounds ? allocation with { Rounds = rounds } : model.Allocation, stages);
    }

    /// <summary>
    /// CMP0088 when the written model took more than <see cref="SlowerWarningRatio"/> times the source's batch-1 time (and
    /// <see cref="SlowerWarningMs"/> more) and the spec sets no <c>maxLatencyRatio</c> (with it the latency guard has already searched the faster forms, or failed
    /// with CMP0030). The margin is wider than the report's note (5%), so timing noise near the line does not make the
    /// warning come and go.
    /// </summary>
    internal static CompressDiagnostic? SlowerWarning(LatencyFigures latency, CompressionSpec spec, string outputPath) =>
        spec.Constraints.MaxLatencyRatio is null && latency.CompressedBatch1Ms > latency.OriginalBatch1Ms * SlowerWarningRatio
            && latency.CompressedBatch1Ms - latency.OriginalBatch1Ms >= SlowerWarningMs
            ? CompressDiagnostic.Warning(DiagnosticCodes.SlowerThanSource,
                $"the compressed model runs {latency.CompressedBatch1Ms / latency.OriginalBatch1Ms:0.00}× as long as the original on this machine: batch 1 {latency.OriginalBatch1Ms:0.###} → {latency.CompressedBatch1Ms:0.###} ms, " +
                $"batch {latency.BatchN} {latency.OriginalBatchNMs:0.###} → {latency.CompressedBatchNMs:0.###} ms (one thread, median); " +
                "set \"constraints\": { \"maxLatencyRatio\": 1.0 } to let the latency guard keep the faster form of each quantized region", outputPath)
            : null;

    /// <summary>The model compressed once by the spec's steps and, when the spec names data and the format runs, compared with its original.</summary>
    /// <param name="recordStage">Records the work of the model after each step, by the step's name.</param>
    private static Compressed CompressOnce(IModelFormat model, CompressionSpec spec, DataSource? data, string outputPath, Action<string> progress, Action<string>? recordStage)
    {
        var warnings = Compress(model, spec, outputPath, progress, recordStage);
        if (data is null || model is not IRunnableFormat runnable)
        {
            return new Compressed(model, warnings, null);
        }

        progress($"validate: original vs compressed on {Path.GetFileName(data.Path)}");
        return new Compressed(model, warnings, runnable.Compare(data, spec, progress));
    }

    /// <summary>
    /// The step loop every format shares — each step announced, applied, and warned about (CMP0036) when it changed
    /// nothing in the model — then the format's finishing stage.
    /// </summary>
    private static List<CompressDiagnostic> Compress(IModelFormat model, CompressionSpec spec, string outputPath, Action<string> progress, Action<string>? recordStage = null)
    {
        var warnings = new List<CompressDiagnostic>();
        foreach (var (step, stage) in GradualSchedule.Expand(spec.Steps))
        {
            progress($"{PassRegistry.KeyOf(step)} (spec line {step.Line}){stage}");
            var before = model.Fingerprint();
            model.Apply(step, progress);
            // An allocation writes the plan of the steps after it, not the model; a finetune step moves values, not forms (it refuses to train nothing).
            if (model.Fingerprint() == before && step is not (AllocateStep or FinetuneStep))
            {
                warnings.Add(CompressDiagnostic.Warning(DiagnosticCodes.StepChangedNothing,
                    $"step '{PassRegistry.KeyOf(step)}' (spec line {step.Line}) changed nothing in the model: {model.NothingChangedHint(step)}", spec.File));
            }

            // A gradual prune's stage is recorded after its distillation (the finetune step after it), not twice.
            if (recordStage is not null && step is not AllocateStep && !(step is PruneStep && stage.Length > 0))
            {
                progress($"{PassRegistry.KeyOf(step)}: measuring the work of the model after it");
                recordStage($"{PassRegistry.KeyOf(step)}{stage}");
            }
        }

        model.Finish(outputPath, progress);
        return warnings;
    }
}

/// <summary>
/// A working copy compressed by the spec's steps: the step loop's warnings, its comparison with the original (null
/// without data or where the format cannot run), and for <c>"sparsity": "auto"</c> the search that chose it.
/// </summary>
internal sealed record Compressed(IModelFormat Model, List<CompressDiagnostic> Warnings, ComparisonMetrics? Metrics, SearchFigures? Search = null,
    IReadOnlyList<AllocationRound>? Rounds = null);
