using Compress.Core.Calibration;
using Compress.Core.Onnx;
using Compress.Spec;

namespace Compress.Core.Passes;

/// <summary>What a pass works on: the model being compressed, the spec, data, and the per-layer record it adds to.</summary>
public sealed class CompressionContext
{
    private readonly Func<OnnxModel, CalibrationSet>? _loadCalibration;
    private CalibrationSet? _calibration;

    public CompressionContext(OnnxModel model, CompressionSpec spec, Func<OnnxModel, CalibrationSet>? loadCalibration, Action<string>? progress = null)
    {
        Model = model;
        Spec = spec;
        _loadCalibration = loadCalibration;
        Progress = progress ?? (_ => { });
    }

    public OnnxModel Model { get; }

    public CompressionSpec Spec { get; }

    public Action<string> Progress { get; }

    /// <summary>Per weight tensor (by its original name): what happened to it.</summary>
    public Dictionary<string, LayerRecord> Layers { get; } = new(StringComparer.Ordinal);

    /// <summary>Per step and layer, what the step is to do (sparsity, pattern, bits): the step's values unless allocated.</summary>
    public Plans.CompressionPlan Plan { get; } = new();

    public List<string> Notes { get; } = [];

    /// <summary>The layers whose layer-wise Hessian had fewer calibration rows than inputs: rows and inputs (<see cref="SecondOrder.LayerHessian.NoteRank"/>).</summary>
    public Dictionary<string, (long Rows, long Cols)> RankDeficient { get; } = new(StringComparer.Ordinal);

    /// <summary>The per-layer allocation the run made, for the report; null when none was made.</summary>
    public Reports.AllocationFigures? Allocation { get; set; }

    /// <summary>The source model's file (the finetune step's teacher runs from it); null where the model was not opened from a file.</summary>
    public string? SourcePath { get; init; }

    /// <summary>The finetune step's inputs and the original model's outputs on them, made by its first run (a gradual prune's stages share them).</summary>
    internal Finetune.DistillationData? Distillation { get; set; }

    /// <summary>Bytes of the source model on disk (file and external data), taken before any pass.</summary>
    public long OriginalBytes { get; init; }

    /// <summary>Weights of the source model (initializer elements), taken before any pass.</summary>
    public long OriginalParameters { get; init; }

    public bool HasCalibration => _loadCalibration is not null;

    /// <summary>The calibration samples, loaded on first use (the spec reader already required them where needed).</summary>
    public CalibrationSet Calibration => _calibration ??= _loadCalibration?.Invoke(Model)
        ?? throw new InvalidOperationException("no calibration data");

    /// <summary>The sequential pass of a layer-wise method while it runs (<see cref="Layerwise"/>), else null.</summary>
    public Execution.LayerFrontier? Frontier { get; private set; }

    /// <summary>
    /// Starts the single sequential pass over the calibration data for a layer-wise method; disposing the result ends
    /// it. Where the TorchSharp executor cannot run the model, layer inputs come from ONNX Runtime per layer (noted).
    /// </summary>
    public IDisposable Layerwise(string method)
    {
        Frontier = Execution.LayerFrontier.TryCreate(Model, Calibration, out var why);
        if (Frontier is null)
        {
            Notes.Add($"{method}: layer inputs taken from ONNX Runtime, one run of the model per layer ({why})");
        }
        else
        {
            Progress($"{method}: one sequential pass over {Calibration.Count:N0} samples in {Frontier.Chunks} chunk{(Frontier.Chunks == 1 ? "" : "s")}");
        }

        return new EndLayerwise(this);
    }

    private sealed class EndLayerwise(CompressionContext context) : IDisposable
    {
        public void Dispose()
        {
            if (context.Frontier?.Failure is { } failure)
            {
                context.Notes.Add($"layer inputs taken from ONNX Runtime for the layers after the executor stopped ({failure})");
            }

            context.Frontier?.Dispose();
            context.Frontier = null;
        }
    }

    public LayerRecord Layer(string weight, string node, string opType, long parameters) =>
        Layers.TryGetValue(weight, out var record) ? record : Layers[weight] = new LayerRecord(weight, node, opType, parameters);
}

/// <summary>One weight tensor through the pipeline; figures filled by the passes that touch it.</summary>
public sealed class LayerRecord(string weight, string node, string opType, long parameters)
{
    public string Weight { get; } = weight;

    public string Node { get; } = node;

    public string OpType { get; } = opType;

    public long Parameters { get; } = parameters;

    public double Sparsity { get; set; }

    /// <summary>Bits per weight as stored: 32, 16, 8 or 4.</summary>
    public int Bits => Format.Bits;

    public Plans.WeightFormat Format { get; set; } = Plans.WeightFormat.Float32;

    /// <summary>
    /// The initializers that hold the layer's weight after the passes so far (a quantized copy's name, say; a factorized
    /// layer has two).
    /// </summary>
    public IReadOnlyList<string> StoredAs { get; private set; } = [weight];

    /// <summary>Records the initializers that now hold the layer's weight.</summary>
    public void Store(params string[] initializers) => StoredAs = initializers;

    /// <summary>‖Ŵ − W‖² / ‖W‖² against the original float weights, after every pass so far.</summary>
    public double RelativeError { get; set; }

    public long BytesBefore { get; set; }

    public long BytesAfter { get; set; }
}
