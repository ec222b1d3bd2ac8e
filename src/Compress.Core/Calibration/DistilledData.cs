using System.Diagnostics;
using System.Globalization;
using Compress.Core.Data;
using Compress.Core.Diagnostics;
using Compress.Core.Execution;
using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Torch;
using Compress.Spec;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Calibration;

/// <summary>
/// ZeroQ's distilled data (Cai et al. 2020; docs/algorithms.md, "Data-free compression"): calibration inputs made from
/// the model alone. Gaussian inputs are optimised with Adam until, at every BatchNormalization, the batch's per-channel
/// mean and standard deviation of the node's input match its running statistics:
/// <c>L(x) = Σ_l ‖μ̃_l(x) − μ_l‖² + ‖σ̃_l(x) − σ_l‖²</c>, <c>σ_l = √(running var_l + ε_l)</c>.
/// The statistics are read from the source model's file, since the working copy has them folded into its Conv weights.
/// Batches of <see cref="BatchSize"/> inputs are optimised one after another from one seeded generator, on the
/// TorchSharp executor with autograd with respect to the inputs: the same seed gives the same bytes on one machine.
/// </summary>
public static class DistilledData
{
    /// <summary>Inputs optimised together: each batch is made to carry the BatchNorm statistics on its own.</summary>
    public const int BatchSize = 32;

    private const double LearningRate = 0.1;
    private const double Beta1 = 0.9;
    private const double Beta2 = 0.999;
    private const double AdamEpsilon = 1e-8;

    /// <summary>
    /// Refuses, before any step runs, a model that cannot give distilled data: no BatchNormalization with running
    /// statistics in its graph (CMP0081), or an input that is not float or has a symbolic dimension besides the batch
    /// (CMP0082). Both are located at <c>data.calibration</c> in the spec.
    /// </summary>
    public static void Check(OnnxModel model, SyntheticData request, string specFile)
    {
        _ = Statistics(model, request, specFile, load: false);
        _ = InputShapes(model, request, specFile);
    }

    /// <summary>
    /// <paramref name="request"/>'s inputs, synthesised from the BatchNorm statistics of the model at
    /// <paramref name="modelPath"/> (the source file, never the prepared working copy), with what the optimisation did.
    /// </summary>
    public static (CalibrationSet Set, DistillationFigures Figures) Synthesize(string modelPath, SyntheticData request, string specFile, Action<string> progress)
    {
        var model = OnnxModel.Load(modelPath);
        var shapes = InputShapes(model, request, specFile);
        using var graph = new TorchGraph(model);
        var statistics = Statistics(model, request, specFile, load: true);
        try
        {
            var watch = Stopwatch.StartNew();
            var random = new Generator((ulong)request.Seed);
            var values = shapes.ToDictionary(s => s.Key, s => new float[request.Samples * s.Value.Aggregate(1L, (a, b) => a * b)]);
            var batches = (request.Samples + BatchSize - 1) / BatchSize;
            double initial = 0, final = 0;
            for (var b = 0; b < batches; b++)
            {
                var start = b * BatchSize;
                var count = Math.Min(BatchSize, request.Samples - start);
                var (first, last, inputs) = Optimise(graph, statistics, shapes, count, request.Iterations, random,
                    (step, loss) => progress(string.Create(CultureInfo.InvariantCulture,
                        $"synthesize: batch {b + 1}/{batches}, step {step}/{request.Iterations}, BatchNorm statistics loss {loss:G4}")));
                initial += first * count;
                final += last * count;
                foreach (var (name, tensor) in inputs)
                {
                    using (tensor)
                    {
                        var sample = values[name].Length / request.Samples;
                        tensor.data<float>().CopyTo(values[name], start * sample);
                    }
                }
            }

            progress(string.Create(CultureInfo.InvariantCulture,
                $"synthesize: {request.Samples} inputs from {statistics.Count} BatchNormalization layers in {watch.Elapsed.TotalSeconds:0.0} s (loss {initial / request.Samples:G4} → {final / request.Samples:G4})"));
            var arrays = shapes.ToDictionary(s => s.Key, s => NpyArray.Create(s.Key, values[s.Key], [request.Samples, .. s.Value]));
            var set = CalibrationSet.Synthesized(arrays, request.Samples, $"{request.Samples} inputs synthesised from BatchNorm statistics (seed {request.Seed})");
            return (set, new DistillationFigures(request.Samples, statistics.Count, request.Iterations, initial / request.Samples, final / request.Samples));
        }
        finally
        {
            foreach (var s in statistics)
            {
                s.Dispose();
            }
        }
    }

    /// <summary>
    /// One batch: Gaussian inputs drawn from <paramref name="random"/>, then <paramref name="iterations"/> Adam steps on
    /// the statistics loss. Returns the loss before the first step and after the last, and the inputs (the caller's).
    /// </summary>
    private static (double Initial, double Final, Dictionary<string, Tensor> Inputs) Optimise(TorchGraph graph, IReadOnlyList<BatchNormStatistics> statistics,
        IReadOnlyDictionary<string, long[]> shapes, int count, int iterations, Generator random, Action<int, double> report)
    {
        var inputs = shapes.ToDictionary(s => s.Key, s => randn([count, .. s.Value], generator: random).requires_grad_(true));
        var leaves = inputs.Values.ToArray();
        var moments = leaves.Select(l => (First: zeros_like(l), Second: zeros_like(l))).ToArray();
        var names = statistics.Select(s => s.Input).Distinct().ToList();
        double initial = 0;
        try
        {
            for (var step = 1; step <= iterations; step++)
            {
                using var scope = NewDisposeScope();
                var loss = Loss(graph.Run(inputs, names), statistics);
                var gradients = autograd.grad([loss], leaves);
                if (step == 1)
                {
                    initial = loss.ToDouble();
                }

                if (step % 25 == 0 || step == iterations)
                {
                    report(step, loss.ToDouble());
                }

                using (no_grad())
                {
                    // Adam (Kingma & Ba 2015): m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², x ← x − lr·m̂/(√v̂ + ε).
                    var (correction1, correction2) = (1 - Math.Pow(Beta1, step), 1 - Math.Pow(Beta2, step));
                    for (var i = 0; i < leaves.Length; i++)
                    {
                        var (m, v) = moments[i];
                        m.mul_(Beta1).add_(gradients[i], alpha: 1 - Beta1);
                        v.mul_(Beta2).addcmul_(gradients[i], gradients[i], value: 1 - Beta2);
                        leaves[i].addcdiv_(m, (v / correction2).sqrt_().add_(AdamEpsilon), value: -LearningRate / correction1);
                    }
                }
            }

            using (no_grad())
            {
                using var scope = NewDisposeScope();
                var final = Loss(graph.Run(inputs, names), statistics).ToDouble();
                return (initial, final, inputs.ToDictionary(p => p.Key, p => p.Value.detach().MoveToOuterDisposeScope()));
            }
        }
        finally
        {
            foreach (var (m, v) in moments)
            {
                m.Dispose();
                v.Dispose();
            }

            foreach (var leaf in leaves)
            {
                leaf.Dispose();
            }
        }
    }

    /// <summary>Σ over BatchNorm layers and channels of the squared differences of batch mean and standard deviation from the running ones.</summary>
    private static Tensor Loss(Dictionary<string, Tensor> values, IReadOnlyList<BatchNormStatistics> statistics)
    {
        Tensor? total = null;
        foreach (var s in statistics)
        {
            var x = values[s.Input];
            var dims = Enumerable.Range(0, (int)x.dim()).Where(d => d != 1).Select(d => (long)d).ToArray();
            var mean = x.mean(dims);
            var std = (x.var(dims, unbiased: false) + s.Epsilon).sqrt();
            var term = (mean - s.Mean).square().sum() + (std - s.Std).square().sum();
            total = total is null ? term : total + term;
        }

        return total!;
    }

    /// <summary>The BatchNormalization nodes of the main graph whose running mean and variance are initializers.</summary>
    private static List<BatchNormStatistics> Statistics(OnnxModel model, SyntheticData request, string specFile, bool load)
    {
        var initializers = model.Graph.Initializers;
        var nodes = model.Graph.Nodes.Where(n => n.OpType == "BatchNormalization" && OnnxModel.NormalizeDomain(n.Domain) == "").ToList();
        var usable = nodes.Where(n => n.Input.Count >= 5 && initializers.ContainsKey(n.Input[3]) && initializers.ContainsKey(n.Input[4])).ToList();
        if (usable.Count == 0)
        {
            throw CompressException.Error(DiagnosticCodes.SynthesisNeedsBatchNorm,
                (nodes.Count == 0
                    ? "'synthesize': 'batchnorm' makes inputs from the model's BatchNormalization statistics, and this model has no BatchNormalization node (it may have been folded into the convolutions on export)"
                    : $"'synthesize': 'batchnorm' needs the running mean and variance of a BatchNormalization as initializers; none of the model's {nodes.Count} has them") +
                ": data-free compression of this model needs methods that take no data — magnitude pruning, weight-only int8/int4 ('activations': 'none') or dynamic int8 ('activations': 'dynamic') — or a data file in data.calibration.path",
                specFile, request.Line, request.Column);
        }

        if (!load)
        {
            return [];
        }

        return usable.Select(n =>
        {
            using var variance = model.ToTorch(initializers[n.Input[4]]).to_type(ScalarType.Float32);
            var epsilon = n.Float("epsilon", 1e-5f);
            return new BatchNormStatistics(n.Input[0], model.ToTorch(initializers[n.Input[3]]).to_type(ScalarType.Float32).flatten().DetachFromDisposeScope(),
                (variance + epsilon).sqrt().flatten().DetachFromDisposeScope(), epsilon);
        }).ToList();
    }

    /// <summary>Each graph input's shape after the batch dimension: fixed sizes, float32 only (CMP0082 otherwise).</summary>
    private static Dictionary<string, long[]> InputShapes(OnnxModel model, SyntheticData request, string specFile)
    {
        CompressException Refuse(string message) => CompressException.Error(DiagnosticCodes.SynthesisInputUnsupported,
            $"'synthesize': 'batchnorm' cannot make inputs for this model: {message}; give a data file in data.calibration.path instead", specFile, request.Line, request.Column);
        var shapes = new Dictionary<string, long[]>(StringComparer.Ordinal);
        foreach (var input in model.Proto.Graph.Input.Where(i => model.Graph.GetInitializer(i.Name) is null))
        {
            var type = input.Type?.TensorType;
            if (type is null || type.ElemType != (int)TensorProto.Types.DataType.Float)
            {
                throw Refuse($"input '{input.Name}' takes {(type is null ? "a non-tensor value" : OnnxElementTypes.Name(type.ElemType))}, and only float32 inputs can be optimised");
            }

            var dims = type.Shape?.Dim;
            if (dims is null || dims.Count == 0)
            {
                throw Refuse($"input '{input.Name}' has no shape in the model (at least a batch dimension is needed)");
            }

            var rest = new long[dims.Count - 1];
            for (var i = 1; i < dims.Count; i++)
            {
                rest[i - 1] = dims[i].ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue && dims[i].DimValue > 0 ? dims[i].DimValue
                    : throw Refuse($"input '{input.Name}' has a symbolic dimension {i} ('{dims[i].DimParam}'); only the batch dimension (0) may be free");
            }

            shapes[input.Name] = rest;
        }

        return shapes;
    }

    /// <summary>One BatchNormalization: the value it normalises, and its running mean and √(var + ε) per channel.</summary>
    private sealed record BatchNormStatistics(string Input, Tensor Mean, Tensor Std, double Epsilon) : IDisposable
    {
        public void Dispose()
        {
            Mean.Dispose();
            Std.Dispose();
        }
    }
}

/// <summary>What the synthesis did: inputs made, BatchNorm layers matched, Adam steps per batch, the statistics loss per input before and after.</summary>
public sealed record DistillationFigures(int Samples, int BatchNormLayers, int Iterations, double InitialLoss, double FinalLoss)
{
    /// <summary>A line for the report's notes.</summary>
    public string Note => string.Create(CultureInfo.InvariantCulture,
        $"calibration: {Samples} inputs synthesised from the statistics of {BatchNormLayers} BatchNormalization layers (ZeroQ distilled data, {Iterations} Adam steps per batch of {DistilledData.BatchSize}; statistics loss {InitialLoss:G3} → {FinalLoss:G3}); no real data was used");
}
