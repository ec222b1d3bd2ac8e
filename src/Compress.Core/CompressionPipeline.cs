using Compress.Core.Calibration;
using Compress.Core.Diagnostics;
using Compress.Core.Evaluation;
using Compress.Core.Fidelity;
using Compress.Core.Formats;
using Compress.Core.Onnx;
using Compress.Core.Passes;
using Compress.Core.Passes.Graph;
using Compress.Core.Reports;
using Compress.Core.StateDicts;
using Compress.Spec;
using Microsoft.ML.OnnxRuntime;

namespace Compress.Core;

/// <summary>
/// <c>compress run</c>: load, apply the spec's steps in order, check the result in ONNX Runtime against the
/// original and the spec's constraints, and only then write the output (atomically) and the report. A failed
/// constraint writes nothing.
/// </summary>
public static class CompressionPipeline
{
    /// <param name="format">
    /// <see cref="ModelFormats.Onnx"/> (the default), <see cref="ModelFormats.TorchScript"/> or
    /// <see cref="ModelFormats.TorchSharp"/>: every format goes through the same step loop, fidelity gate, size check and
    /// report; ONNX adds its graph preparation, sparse storage, the load check, <c>"sparsity": "auto"</c> and latency.
    /// </param>
    public static CompressionReport Run(string modelPath, CompressionSpec spec, string outputPath, Action<string>? progress = null, bool measureLatency = true,
        string format = ModelFormats.Onnx)
    {
        progress ??= _ => { };
        if (Path.GetFullPath(outputPath) == Path.GetFullPath(modelPath))
        {
            throw CompressException.Error(DiagnosticCodes.OutputInvalid, "the output would overwrite the input model; choose another --output", outputPath);
        }

        if (format != ModelFormats.Onnx)
        {
            return RunTorch(modelPath, spec, outputPath, progress, format);
        }

        // The original runs from its file: only its interface is held beside the working copy (no second copy of the weights).
        var evaluation = spec.Evaluation ?? spec.Calibration;
        var original = evaluation is null ? null : OnnxModel.LoadInterface(modelPath);
        var data = evaluation is null ? null : CalibrationSet.Load(evaluation, original!, spec.File);
        // Without evaluation data the calibration set is the one evaluated on: loaded once, not twice.
        var calibration = spec.Evaluation is null ? data : null;
        OnnxModel working;
        CompressionContext context;
        ComparisonMetrics? metrics = null;
        SearchFigures? search = null;
        if (spec.Steps.OfType<PruneStep>().FirstOrDefault(p => p.Auto) is { } auto)
        {
            var result = AutoSparsity.Run(auto, spec, original!, data!, () => Compress(modelPath, spec, outputPath, progress, calibration), progress, outputPath);
            (working, context, metrics, search) = (result.Model, result.Context, result.Metrics, result.Figures);
        }
        else
        {
            (working, context) = Compress(modelPath, spec, outputPath, progress, calibration);
            if (data is not null)
            {
                progress($"validate: original vs compressed on {Path.GetFileName(data.Source)}");
                metrics = Compare(original!, working, data, spec);
            }
        }

        var (constraints, fidelityWarnings) = metrics is null ? ([], []) : FidelityGate.Check(spec, metrics, WorstLayers(context), outputPath);
        var warnings = context.Warnings.Concat(fidelityWarnings).ToList();
        if (metrics is null)
        {
            if (FidelityGate.HasFidelityConstraint(spec.Constraints))
            {
                throw CompressException.Error(SpecCodes.Inconsistent, "constraints need evaluation or calibration data to be checked", spec.File, 1, 1);
            }

            context.Notes.Add("fidelity not measured: the spec names no evaluation or calibration data, so the default floor could not be checked");
        }

        var originalBytes = context.OriginalBytes;
        var compressedBytes = working.SerializedBytes();
        if (compressedBytes > originalBytes)
        {
            throw CompressException.Error(DiagnosticCodes.ArtifactLarger,
                $"the compressed model would be {compressedBytes:N0} bytes, larger than its source ({originalBytes:N0} bytes); " +
                "the steps cannot shrink this model as specified (see the report's layers), so nothing was written", outputPath);
        }

        LatencyFigures? latency = null;
        if (measureLatency && data is not null)
        {
            progress("latency: batch 1 and batch N, one thread");
            latency = LatencyComparison.Measure(original!.Path!, working, data);
        }

        working.Save(outputPath);
        var size = new SizeFigures(originalBytes, SavedBytes(outputPath), 0, 0, 0);
        var layers = context.Layers.Values.Select(l => new LayerFigures(l.Weight, l.Node, l.OpType, l.Parameters, l.Sparsity, l.Bits, l.Format.ToString(), l.RelativeError)).ToList();
        var parameters = context.OriginalParameters;
        var prunedZeros = context.Layers.Values.Sum(l => l.Sparsity * l.Parameters);
        size = size with
        {
            OriginalParameters = parameters,
            Ratio = size.CompressedBytes / (double)size.OriginalBytes,
            OverallSparsity = parameters == 0 ? 0 : prunedZeros / parameters,
        };
        if (latency?.CompressedIsSlower == true)
        {
            context.Notes.Add("the compressed model runs slower than the original on this machine (see latency)");
        }

        return new CompressionReport(Path.GetFullPath(modelPath), Path.GetFullPath(outputPath), spec.File,
            spec.Steps.Select(PassRegistry.KeyOf).ToList(), size, layers, metrics, constraints, latency, context.Notes, search, warnings);
    }

    /// <summary>One compression of the model file by the spec's steps (a fresh copy each time), checked to load in ONNX Runtime.</summary>
    private static (OnnxModel Model, CompressionContext Context) Compress(string modelPath, CompressionSpec spec, string outputPath, Action<string> progress,
        CalibrationSet? loaded)
    {
        var working = OnnxModel.Load(modelPath);
        var context = new CompressionContext(working, spec,
            spec.Calibration is { } c ? m => loaded ?? CalibrationSet.Load(c, m, spec.File) : null, progress)
        {
            OriginalBytes = working.BytesOnDisk(),
            OriginalParameters = working.Proto.Graph.Initializer.Sum(t => OnnxElementTypes.ElementCount(t.Dims)),
        };
        GraphPreparation.Apply(working, context.Notes);
        context.Warnings.AddRange(ApplySteps(new OnnxSteps(context), spec, progress));

        var sparse = SparseStorage.Apply(working, context.Layers);
        if (sparse > 0)
        {
            context.Notes.Add($"{sparse} pruned weights stored as bitmask or sparse initializers (smaller file, same values)");
            progress($"storage: {sparse} pruned weights as bitmask or sparse initializers");
            GC.Collect(); // the dense copies they replaced
        }

        CheckLoads(working, outputPath);
        return (working, context);
    }

    private static void CheckLoads(OnnxModel model, string outputPath)
    {
        GC.Collect(); // what the passes left behind goes before ONNX Runtime takes its own copy of the weights
        try
        {
            using var runner = new OrtModelRunner(model, optimize: false);
        }
        catch (OnnxRuntimeException e)
        {
            throw CompressException.Error(DiagnosticCodes.CompressedModelRejected,
                $"ONNX Runtime cannot load the compressed model: {e.Message}", outputPath, inner: e);
        }
    }

    /// <summary>Original against compressed on the data, judging the output the spec names (an unknown name is a spec error).</summary>
    internal static ComparisonMetrics Compare(OnnxModel original, OnnxModel compressed, CalibrationSet data, CompressionSpec spec)
    {
        try
        {
            return ModelComparison.Compare(original, compressed, data, FidelityChoice.From(spec.Evaluation), originalOnDisk: true);
        }
        catch (UnknownOutputException e)
        {
            var at = spec.Evaluation;
            throw CompressException.Error(SpecCodes.Inconsistent, $"data.evaluation.output: {e.Message}", spec.File, at?.Line ?? 1, at?.Column ?? 1);
        }
    }

    /// <summary>
    /// The step loop every format shares: each step announced, applied, and warned about (CMP0036) when it changed
    /// nothing in the model.
    /// </summary>
    private static List<CompressDiagnostic> ApplySteps(IStepTarget target, CompressionSpec spec, Action<string> progress)
    {
        var warnings = new List<CompressDiagnostic>();
        foreach (var step in spec.Steps)
        {
            progress($"{PassRegistry.KeyOf(step)} (spec line {step.Line})");
            var before = target.Fingerprint();
            target.Apply(step, progress);
            if (target.Fingerprint() == before)
            {
                warnings.Add(CompressDiagnostic.Warning(DiagnosticCodes.StepChangedNothing,
                    $"step '{PassRegistry.KeyOf(step)}' (spec line {step.Line}) changed nothing in the model: {target.NothingChangedHint(step)}", spec.File));
            }
        }

        return warnings;
    }

    /// <summary>A TorchScript archive or TorchSharp state dict: the shared step loop, fidelity gate, size check and report.</summary>
    private static CompressionReport RunTorch(string modelPath, CompressionSpec spec, string outputPath, Action<string> progress, string format)
    {
        using IModelFormat model = format == ModelFormats.TorchScript ? new TorchScriptFormat(modelPath, spec) : new StateDictFormat(modelPath, spec);
        var warnings = ApplySteps(model, spec, progress);
        model.Finish(outputPath, progress);
        var layers = model.Layers();
        ComparisonMetrics? metrics = null;
        List<ConstraintResult> constraints = [];
        if ((spec.Evaluation ?? spec.Calibration) is { } evaluation && model is IRunnableFormat runnable)
        {
            progress($"validate: original vs compressed on {Path.GetFileName(evaluation.Path)}");
            metrics = runnable.Compare(evaluation, spec, progress);
        }

        if (metrics is not null)
        {
            var (results, fidelityWarnings) = FidelityGate.Check(spec, metrics, FidelityGate.WorstLayers(layers.Select(l => (l.Node, l.Format, l.RelativeError))), outputPath);
            constraints = results;
            warnings.AddRange(fidelityWarnings);
        }

        var compressedBytes = model.Save(outputPath);
        var parameters = model.SourceParameters;
        var size = new SizeFigures(model.SourceBytes, compressedBytes, parameters, compressedBytes / (double)model.SourceBytes,
            parameters == 0 ? 0 : layers.Sum(l => l.Sparsity * l.Parameters) / parameters);
        return new CompressionReport(Path.GetFullPath(modelPath), Path.GetFullPath(outputPath), spec.File,
            spec.Steps.Select(PassRegistry.KeyOf).ToList(), size, layers.ToList(), metrics, constraints, null, model.Notes.ToList(), Warnings: warnings);
    }

    /// <summary>The ONNX working copy as the step loop sees it: each step through its pass on the compression context.</summary>
    private sealed class OnnxSteps(CompressionContext context) : IStepTarget
    {
        public void Apply(SpecStep step, Action<string> progress)
        {
            PassRegistry.Create(step).Apply(context);
            GC.Collect(); // a pass leaves model-sized buffers (replaced tensor data, conversions) behind: free them before the next
        }

        /// <summary>What a pass changes when it does anything: layer records, nodes, initializers.</summary>
        public string Fingerprint() =>
            $"{context.Model.Proto.Graph.Node.Count}/{context.Model.Proto.Graph.Initializer.Count}/{context.Model.Proto.Graph.SparseInitializer.Count}/" +
            string.Join(";", context.Layers.Values.Select(l => $"{l.Weight}:{l.Format}:{l.Bits}:{l.Sparsity}"));

        public string NothingChangedHint(SpecStep step) =>
            $"none of its ops ({string.Join(", ", step.OpTypes)}) has a weight it can take" +
            (SubgraphWeights(context.Model) is > 0 and var nested ? $"; {nested} weights sit inside If/Loop subgraphs, which the steps do not reach yet" : "");
    }

    /// <summary>Weight-sized tensors (≥ 1,024 values) in initializers and Constant nodes of subgraphs (If/Loop/Scan bodies).</summary>
    private static int SubgraphWeights(OnnxModel model)
    {
        static IEnumerable<Onnx.Proto.GraphProto> Nested(Onnx.Proto.GraphProto graph) =>
            graph.Node.SelectMany(n => n.Attribute).SelectMany(a => a.G is null ? a.Graphs : a.Graphs.Prepend(a.G)).SelectMany(g => Nested(g).Prepend(g));
        return Nested(model.Proto.Graph).Sum(g =>
            g.Initializer.Count(t => OnnxElementTypes.ElementCount(t.Dims) >= 1024) +
            g.Node.Count(n => n.OpType == "Constant" && n.Attribute.FirstOrDefault(a => a.Name == "value")?.T is { } t && OnnxElementTypes.ElementCount(t.Dims) >= 1024));
    }

    private static IEnumerable<string> WorstLayers(CompressionContext context) =>
        FidelityGate.WorstLayers(context.Layers.Values.Select(l => (l.Node, l.Format.ToString(), l.RelativeError)));

    /// <summary>Bytes on disk of a model just written: the file plus the external data file the writer puts next to it.</summary>
    private static long SavedBytes(string path) =>
        new FileInfo(path).Length + (File.Exists(path + ".data") ? new FileInfo(path + ".data").Length : 0);
}
