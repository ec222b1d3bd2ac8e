using Compress.Core.Calibration;
using Compress.Core.Diagnostics;
using Compress.Core.Evaluation;
using Compress.Core.Onnx;
using Compress.Core.Passes;
using Compress.Core.Passes.Graph;
using Compress.Core.Reports;
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
    public static CompressionReport Run(string modelPath, CompressionSpec spec, string outputPath, Action<string>? progress = null, bool measureLatency = true)
    {
        progress ??= _ => { };
        if (Path.GetFullPath(outputPath) == Path.GetFullPath(modelPath))
        {
            throw CompressException.Error(DiagnosticCodes.OutputInvalid, "the output would overwrite the input model; choose another --output", outputPath);
        }

        var original = OnnxModel.Load(modelPath);
        var evaluation = spec.Evaluation ?? spec.Calibration;
        var data = evaluation is null ? null : CalibrationSet.Load(evaluation, original, spec.File);
        OnnxModel working;
        CompressionContext context;
        ComparisonMetrics? metrics = null;
        SearchFigures? search = null;
        if (spec.Steps.OfType<PruneStep>().FirstOrDefault(p => p.Auto) is { } auto)
        {
            var result = AutoSparsity.Run(auto, spec, original, data!, () => Compress(modelPath, spec, outputPath, progress), progress, outputPath);
            (working, context, metrics, search) = (result.Model, result.Context, result.Metrics, result.Figures);
        }
        else
        {
            (working, context) = Compress(modelPath, spec, outputPath, progress);
            if (data is not null)
            {
                progress($"validate: original vs compressed on {Path.GetFileName(data.Source)}");
                metrics = ModelComparison.Compare(original, working, data);
            }
        }

        var constraints = Check(spec, metrics, context, outputPath);
        LatencyFigures? latency = null;
        if (measureLatency && data is not null)
        {
            progress("latency: batch 1 and batch N, one thread");
            latency = MeasureLatency(original, working, data);
        }

        working.Save(outputPath);
        var size = new SizeFigures(ModelBytes(original), ModelBytes(OnnxModel.Load(outputPath)), 0, 0, 0);
        var layers = context.Layers.Values.Select(l => new LayerFigures(l.Weight, l.Node, l.OpType, l.Parameters, l.Sparsity, l.Bits, l.Format, l.RelativeError)).ToList();
        var parameters = original.Proto.Graph.Initializer.Sum(t => OnnxElementTypes.ElementCount(t.Dims));
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
            spec.Steps.Select(PassRegistry.KeyOf).ToList(), size, layers, metrics, constraints, latency, context.Notes, search);
    }

    /// <summary>One compression of the model file by the spec's steps (a fresh copy each time), checked to load in ONNX Runtime.</summary>
    private static (OnnxModel Model, CompressionContext Context) Compress(string modelPath, CompressionSpec spec, string outputPath, Action<string> progress)
    {
        var working = OnnxModel.Load(modelPath);
        var moved = ConstantsToInitializers.Apply(working);
        var context = new CompressionContext(working, spec,
            spec.Calibration is { } c ? m => CalibrationSet.Load(c, m, spec.File) : null, progress);
        if (moved > 0)
        {
            context.Notes.Add($"{moved} Constant-node weights moved to initializers");
        }

        var folded = BatchNormFolding.Apply(working);
        if (folded > 0)
        {
            context.Notes.Add($"{folded} BatchNormalization nodes folded into the preceding Conv");
        }

        foreach (var step in spec.Steps)
        {
            var pass = PassRegistry.Create(step);
            progress($"{pass.Name} (spec line {step.Line})");
            pass.Apply(context);
        }

        var sparse = SparseStorage.Apply(working, context.Layers);
        if (sparse > 0)
        {
            context.Notes.Add($"{sparse} pruned weights stored as bitmask or sparse initializers (smaller file, same values)");
        }

        CheckLoads(working, outputPath);
        return (working, context);
    }

    /// <summary>Bytes on disk: the model file plus the external data files it references.</summary>
    public static long ModelBytes(OnnxModel model) =>
        new FileInfo(model.Path!).Length + model.ExternalData.Values.Select(r => r.FullPath).Distinct().Sum(f => new FileInfo(f).Length);

    private static void CheckLoads(OnnxModel model, string outputPath)
    {
        try
        {
            using var runner = new OrtModelRunner(model);
        }
        catch (OnnxRuntimeException e)
        {
            throw CompressException.Error(DiagnosticCodes.CompressedModelRejected,
                $"ONNX Runtime cannot load the compressed model: {e.Message}", outputPath, inner: e);
        }
    }

    private static List<ConstraintResult> Check(CompressionSpec spec, ComparisonMetrics? metrics, CompressionContext context, string outputPath)
    {
        var results = new List<ConstraintResult>();
        var limits = spec.Constraints;
        if (metrics is null)
        {
            if (limits.MaxAccuracyDrop is not null || limits.MinAgreement is not null || limits.MinSqnrDb is not null)
            {
                throw CompressException.Error(SpecCodes.Inconsistent, "constraints need evaluation or calibration data to be checked", spec.File, 1, 1);
            }

            return results;
        }

        results.AddRange(Evaluate(limits, metrics));
        var failed = results.Where(r => !r.Met).ToList();
        if (failed.Count > 0)
        {
            var worst = context.Layers.Values.OrderByDescending(l => l.RelativeError).Take(3)
                .Select(l => $"{l.Node} ({l.Format}, relative error {l.RelativeError:E2})");
            var accuracy = metrics.OriginalAccuracy is { } a && metrics.CompressedAccuracy is { } b ? $"accuracy {a:P2} → {b:P2}, " : "";
            throw CompressException.Error(DiagnosticCodes.ConstraintNotMet,
                $"{string.Join("; ", failed.Select(f => $"{f.Name} {f.Limit:0.####} not met (measured {f.Measured:0.####})"))}; " +
                $"{accuracy}agreement {metrics.Agreement:P2}, SQNR {metrics.SqnrDb:0.0} dB on {metrics.Samples} samples; " +
                $"worst layers: {string.Join(", ", worst)}. No output was written.", outputPath);
        }

        return results;
    }

    /// <summary>Each constraint the spec sets, against the measured figures.</summary>
    internal static List<ConstraintResult> Evaluate(SpecConstraints limits, ComparisonMetrics metrics)
    {
        var results = new List<ConstraintResult>();
        if (limits.MaxAccuracyDrop is { } drop && metrics.AccuracyDrop is { } measured)
        {
            results.Add(new ConstraintResult("maxAccuracyDrop", drop, measured, measured <= drop + 1e-12));
        }

        if (limits.MinAgreement is { } agreement)
        {
            results.Add(new ConstraintResult("minAgreement", agreement, metrics.Agreement, metrics.Agreement >= agreement));
        }

        if (limits.MinSqnrDb is { } sqnr)
        {
            results.Add(new ConstraintResult("minSqnrDb", sqnr, metrics.SqnrDb, metrics.SqnrDb >= sqnr));
        }

        return results;
    }

    private static LatencyFigures MeasureLatency(OnnxModel original, OnnxModel compressed, CalibrationSet data)
    {
        using var a = new OrtModelRunner(original);
        using var b = new OrtModelRunner(compressed);
        var n = Math.Min(Math.Min(a.MaxBatch(64), b.MaxBatch(64)), data.Count);
        return new LatencyFigures(n,
            a.MedianLatencyMs(data, 1, 31), b.MedianLatencyMs(data, 1, 31),
            a.MedianLatencyMs(data, n, 11), b.MedianLatencyMs(data, n, 11));
    }
}
