using System.Globalization;
using Compress.Core.Calibration;
using Compress.Core.Diagnostics;
using Compress.Core.Evaluation;
using Compress.Core.Fidelity;
using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Passes;
using Compress.Core.Passes.Graph;
using Compress.Core.Reports;
using Compress.Spec;
using Microsoft.ML.OnnxRuntime;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Core.Formats;

/// <summary>
/// An ONNX model in a compression run. Opening reads the evaluation data against the original's interface (the
/// original runs from its file: no second copy of its weights is held), so data that does not fit the model is refused
/// before any step runs; then the working copy, prepared for the steps (<see cref="GraphPreparation"/>). Each step is
/// its pass (<see cref="PassRegistry"/>) on one <see cref="CompressionContext"/>; finishing stores pruned weights as
/// bitmask or sparse initializers (<see cref="SparseStorage"/>), stores repeated constants once
/// (<see cref="DuplicateConstants"/>) and checks that ONNX Runtime loads the result.
/// </summary>
internal sealed class OnnxFormat : IReopenableFormat, IStagedFormat
{
    private readonly Source _source;
    private CompressionContext? _working;
    private (string Shape, long Count)? _lastMultiplyAdds;

    public OnnxFormat(string path, CompressionSpec spec, Action<string> progress)
        : this(Source.Open(path, spec, progress))
    {
    }

    private OnnxFormat(Source source)
    {
        _source = source;
        var (model, spec) = (OnnxModel.Load(source.Path), source.Spec);
        if (spec.SyntheticCalibration is { } synthetic)
        {
            DistilledData.Check(model, synthetic, spec.File); // on the model as read: preparation folds its BatchNorms away
        }

        _working = new CompressionContext(model, spec,
            spec.Calibration is { } c ? m => source.Calibration ?? CalibrationSet.Load(c, m, spec.File)
            : source.Distilled is { } distilled ? _ => distilled.Value.Set : null, source.Progress)
        {
            SourcePath = source.Path,
            OriginalBytes = model.BytesOnDisk(),
            OriginalParameters = model.Proto.Graph.Initializer.Sum(t => OnnxElementTypes.ElementCount(t.Dims)),
        };
        GraphPreparation.Apply(model, _working.Notes);
    }

    /// <summary>The working copy and what its passes work on and record.</summary>
    private CompressionContext Context => _working ?? throw new ObjectDisposedException(nameof(OnnxFormat));

    private OnnxModel Model => Context.Model;

    public long SourceBytes => Context.OriginalBytes;

    public long SourceParameters => Context.OriginalParameters;

    public IReadOnlyList<string> Notes => Context.Notes;

    public AllocationFigures? Allocation => Context.Allocation;

    public long? WorkingBytes() => Pack is { } pack
        ? (pack.Format == PackStep.PackedFormat ? Packing.PackedArtifact.Pack(Model, Context.Spec.File).Length : Packing.PackedArtifact.GatherForm(Model, Context.Spec.File).CalculateSize())
        : Model.SerializedBytes();

    public IReopenableFormat Reopen() => new OnnxFormat(_source);

    public void Apply(SpecStep step, Action<string> progress)
    {
        PassRegistry.Create(step).Apply(Context);
        GC.Collect(); // a pass leaves model-sized buffers (replaced tensor data, conversions) behind: free them before the next
    }

    /// <summary>What a pass changes when it does anything: layer records, nodes, initializers.</summary>
    public string Fingerprint() =>
        $"{Model.Proto.Graph.Node.Count}/{Model.Proto.Graph.Initializer.Count}/{Model.Proto.Graph.SparseInitializer.Count}/" +
        string.Join(";", Context.Layers.Values.Select(l => $"{l.Weight}:{l.Format}:{l.Bits}:{l.Sparsity}"));

    public string NothingChangedHint(SpecStep step) =>
        $"none of its ops ({string.Join(", ", step.OpTypes)}) has a weight it can take" +
        (SubgraphWeights(Model) is > 0 and var nested ? $"; {nested} weights sit inside If/Loop subgraphs, which the steps do not reach yet" : "");

    public IReadOnlyList<LayerFigures> Layers() =>
        Context.Layers.Values.Select(l => new LayerFigures(l.Weight, l.Node, l.OpType, l.Parameters, l.Sparsity, l.Bits, l.Format.ToString(), l.RelativeError)).ToList();

    /// <summary>The spec's <c>pack</c> step (its last), or null: then the artifact is the packed form, not the model as it is.</summary>
    private PackStep? Pack => Context.Spec.Steps.OfType<PackStep>().LastOrDefault();

    public void Finish(string outputPath, Action<string> progress)
    {
        if (_source.Distilled is { IsValueCreated: true } distilled)
        {
            Context.Notes.Add(distilled.Value.Figures.Note);
        }

        if (Pack is { } pack)
        {
            Packing.PackOutput.Check(pack, Context.Spec, outputPath);
        }

        // A packed model codes its zeros itself: sparse storage would only hide them from the packer.
        var sparse = Pack is null ? SparseStorage.Apply(Model, Context.Layers) : 0;
        if (sparse > 0)
        {
            Context.Notes.Add($"{sparse} pruned weights stored as bitmask or sparse initializers (smaller file, same values)");
            progress($"storage: {sparse} pruned weights as bitmask or sparse initializers");
            GC.Collect(); // the dense copies they replaced
        }

        var untidy = Model.Proto.CalculateSize();
        if (DuplicateConstants.Merge(Model) is > 0 and var merged)
        {
            Context.Notes.Add($"{merged} repeated constants stored once ({untidy - Model.Proto.CalculateSize():N0} bytes; same values)");
        }

        if (Context.Spec.Constraints.MaxLatencyRatio is { } ratio && _source.Data is { } data)
        {
            Guard(ratio, data, outputPath, progress);
        }

        if (Context.Spec.Steps.Any(s => s is PruneStep { Channel: true } or FactorizeStep) && MultiplyAdds(source: true) is { } before && MultiplyAdds(source: false) is { } after)
        {
            // Steps that change shapes change the work: multiply-adds of Conv/ConvTranspose/Gemm/MatMul for one sample, before and after.
            Context.Notes.Add($"multiply-adds per sample (Conv/ConvTranspose/Gemm/MatMul): {before:N0} → {after:N0} ({after / (double)Math.Max(1, before):P1})");
        }

        GC.Collect(); // what the passes left behind goes before ONNX Runtime takes its own copy of the weights
        try
        {
            using var runner = new OrtModelRunner(Model, optimize: false);
        }
        catch (OnnxRuntimeException e)
        {
            throw CompressException.Error(DiagnosticCodes.CompressedModelRejected,
                $"ONNX Runtime cannot load the compressed model: {e.Message}", outputPath, inner: e);
        }
    }

    /// <summary>
    /// <c>constraints.maxLatencyRatio</c>: the model about to ship timed against its source, each quantized region kept
    /// in the form measured faster — int8, float, or float with float weights (<see cref="LatencyGuard"/>); one still
    /// past the ratio is not written (CMP0030).
    /// </summary>
    private void Guard(double ratio, CalibrationSet data, string outputPath, Action<string> progress)
    {
        if (Model.ExternalData.Count > 0)
        {
            Context.Notes.Add("latency guard: not run on a model with external data (each timing would copy its weights)");
            return;
        }

        var choice = LatencyGuard.Apply(Model, _source.Path, data, ratio, progress);
        Context.Notes.Add(choice.Note);
        if (!LatencyGuard.Within(choice.Milliseconds, choice.SourceMilliseconds, ratio))
        {
            throw CompressException.Error(DiagnosticCodes.ConstraintNotMet,
                $"constraint maxLatencyRatio {ratio:0.###} not met: the compressed model takes {choice.Milliseconds:0.###} ms at batch 1 against the source's " +
                $"{choice.SourceMilliseconds:0.###} ms ({choice.Milliseconds / choice.SourceMilliseconds:0.00}×, past the limit by more than the {LatencyGuard.Margin:P0} timing margin) in its fastest measured form; nothing was written", outputPath);
        }
    }

    /// <summary>Judges the output the spec names (checked against the model when it was opened).</summary>
    /// <param name="data">The spec's evaluation data, as read when the model was opened.</param>
    public ComparisonMetrics Compare(DataSource data, CompressionSpec spec, Action<string> progress) =>
        ModelComparison.Compare(_source.Original!, Model, _source.Data!, FidelityChoice.From(spec.Evaluation), originalOnDisk: true);

    /// <param name="data">The spec's evaluation data, as read when the model was opened.</param>
    public LatencyFigures MeasureLatency(DataSource data) =>
        LatencyComparison.Measure(_source.Path, Model, _source.Data!) with { Forms = Model.ExternalData.Count > 0 ? null : WeightFormTiming.Measure(Model, _source.Data!) };

    /// <summary>Models up to this size are counted and timed at every stage (each runs a copy of the model in ONNX Runtime).</summary>
    private const long CountedBytes = 256L << 20;

    /// <summary>The data to count and time the working copy on, or null where it is not counted (no data, external data, over <see cref="CountedBytes"/>).</summary>
    private CalibrationSet? Countable() => Model.ExternalData.Count > 0 || SourceBytes > CountedBytes ? null : _source.Data;

    public long? MultiplyAdds(bool source)
    {
        if (Countable() is not { } sample)
        {
            return null;
        }

        try
        {
            // The source as read from its file (the original at hand is its interface only), counted once for every
            // working copy; the working copy again only when its counted nodes or their weights' shapes changed (a prune
            // or finetune leaves them).
            if (source)
            {
                return _source.MultiplyAdds.Value;
            }

            var shape = FlopCount.Signature(Model);
            if (_lastMultiplyAdds is { } last && last.Shape == shape)
            {
                return last.Count;
            }

            var count = FlopCount.MultiplyAdds(Model, sample);
            _lastMultiplyAdds = (shape, count);
            return count;
        }
        catch (OnnxRuntimeException)
        {
            return null; // a working copy ONNX Runtime cannot run between steps is judged when written
        }
    }

    public double? Batch1Ms()
    {
        if (Countable() is not { } sample)
        {
            return null;
        }

        try
        {
            return LatencyComparison.Batch1Ms(Model, sample, TimeSpan.FromSeconds(0.5));
        }
        catch (OnnxRuntimeException)
        {
            return null;
        }
    }

    public long Save(string outputPath)
    {
        if (Pack is { } pack)
        {
            return Packing.PackOutput.Save(Model, pack, SourceBytes, outputPath, Context.Notes);
        }

        var bytes = Model.SerializedBytes();
        if (bytes > SourceBytes)
        {
            throw CompressException.Error(DiagnosticCodes.ArtifactLarger,
                $"the compressed model would be {bytes:N0} bytes, larger than its source ({SourceBytes:N0} bytes); " +
                "the steps cannot shrink this model as specified (see the report's layers), so nothing was written", outputPath);
        }

        Model.Save(outputPath);
        // The writer puts external data (a model past protobuf's 2 GB) in a file next to the model.
        return new FileInfo(outputPath).Length + (File.Exists(outputPath + ".data") ? new FileInfo(outputPath + ".data").Length : 0);
    }

    /// <summary>Lets the working copy go (a round of the sparsity search that was not chosen): it is as large as the model.</summary>
    public void Dispose()
    {
        _working?.Distillation?.Dispose();
        _working = null;
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

    /// <summary>
    /// The output the comparison will judge, checked before any step: a name that is not a float output of the model is
    /// a spec error at <c>data.evaluation.output</c>, and a constraint its declared shape can never measure (agreement
    /// on a detection map <c>[N, 1, H, W]</c>) one at the constraint (<see cref="FidelityGate.CheckMeasurable"/>).
    /// </summary>
    private static void CheckJudgedOutput(OnnxModel original, CalibrationSet data, CompressionSpec spec)
    {
        var outputs = original.Proto.Graph.Output;
        var floats = outputs.Where(o => o.Type?.TensorType?.ElemType == (int)DataType.Float).ToList();
        var choice = FidelityChoice.From(spec.Evaluation);
        if (choice.Output is { } named && floats.All(o => o.Name != named))
        {
            var at = spec.Evaluation!;
            throw CompressException.Error(SpecCodes.Inconsistent,
                $"data.evaluation.output: '{named}' is not a float32 output of the model (outputs: {string.Join(", ", outputs.Select(o => o.Name))})", spec.File, at.Line, at.Column);
        }

        if (floats.FirstOrDefault(o => choice.Output is null || o.Name == choice.Output) is not { } judged)
        {
            return; // no float output: the comparison says so
        }

        if (FidelityMetrics.KindFor(choice.Metric) is { } forced)
        {
            FidelityGate.CheckMeasurable(spec, judged.Name, forced, $"by data.evaluation.metric '{choice.Metric}'");
            return;
        }

        if (judged.Type.TensorType.Shape?.Dim is not { Count: > 0 } dims)
        {
            return; // no declared shape: its kind is known only when it runs
        }

        var declared = dims.Select(d => d.ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue ? d.DimValue : (long?)null).ToList();
        FidelityGate.CheckMeasurable(spec, judged.Name, OutputKinds.Declared(declared, ModelComparison.AttentionMask(data) is not null),
            $"declared [{string.Join(", ", declared.Select(d => d?.ToString(CultureInfo.InvariantCulture) ?? "?"))}] by the model");
    }

    /// <summary>
    /// What every working copy of one model shares: the spec and the progress sink, and, read once, the original's
    /// interface and the evaluation data (the spec's evaluation data, else its calibration data), which is the
    /// calibration set too when the spec names no evaluation data. Calibration inputs synthesised from the source's
    /// BatchNorm statistics (<see cref="DistilledData"/>) are made once, on first use, and are never evaluation data; so
    /// are the source's multiply-adds per sample on the data (read from its file: the original here is its interface).
    /// </summary>
    private sealed record Source(string Path, CompressionSpec Spec, Action<string> Progress, OnnxModel? Original, CalibrationSet? Data, CalibrationSet? Calibration,
        Lazy<(CalibrationSet Set, DistillationFigures Figures)>? Distilled = null)
    {
        public Lazy<long> MultiplyAdds { get; } = new(() => FlopCount.MultiplyAdds(OnnxModel.Load(Path), Data!));

        public static Source Open(string path, CompressionSpec spec, Action<string> progress)
        {
            var evaluation = spec.Evaluation ?? spec.Calibration;
            var original = evaluation is null ? null : OnnxModel.LoadInterface(path);
            var data = evaluation is null ? null : CalibrationSet.Load(evaluation, original!, spec.File);
            if (data is not null)
            {
                CheckJudgedOutput(original!, data, spec);
            }

            // Without evaluation data the calibration set is the one evaluated on: loaded once, not twice. Synthesised
            // calibration (spec.Calibration null) never is: it could only tell how the model treats its own fantasies.
            var distilled = spec.SyntheticCalibration is { } synthetic
                ? new Lazy<(CalibrationSet, DistillationFigures)>(() => DistilledData.Synthesize(path, synthetic, spec.File, progress))
                : null;
            return new Source(path, spec, progress, original, data, spec.Evaluation is null ? data : null, distilled);
        }
    }
}
