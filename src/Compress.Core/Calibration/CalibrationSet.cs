using Compress.Core.Data;
using Compress.Core.Diagnostics;
using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Spec;

namespace Compress.Core.Calibration;

/// <summary>
/// Samples for a model: one array per model input (matched by name; a single unnamed array is taken for a
/// single-input model), the same number of rows in each, optionally labels. A seeded random subset when the
/// spec asks for fewer samples than the file holds. Inputs that are not per sample — scalars (a sample rate) and
/// arrays whose first dimension the model fixes to a value other than 1 (an RNN state <c>[2, N, H]</c>) — are
/// <see cref="Constants"/>: fed whole with every sample, which are then run one at a time.
/// </summary>
public sealed class CalibrationSet
{
    private CalibrationSet(IReadOnlyDictionary<string, NpyArray> inputs, IReadOnlyDictionary<string, NpyArray> constants, long[]? labels, int count, string source)
    {
        Inputs = inputs;
        Constants = constants;
        Labels = labels;
        Count = count;
        Source = source;
    }

    /// <summary>Per-sample inputs: rows of the first dimension are samples.</summary>
    public IReadOnlyDictionary<string, NpyArray> Inputs { get; }

    /// <summary>Inputs fed whole with every sample (batch 1 then, since their batch axis is not the first).</summary>
    public IReadOnlyDictionary<string, NpyArray> Constants { get; }

    /// <summary>
    /// The largest batch these samples should be run in: 1 with constant inputs; else <paramref name="wanted"/>, fewer
    /// when a batch's inputs would pass 4 MB (a 224×224 image model's activations are ~50× its input, per session).
    /// </summary>
    public int MaxBatch(int wanted)
    {
        var sampleBytes = Inputs.Values.Sum(a => a.SampleSize * Onnx.OnnxElementTypes.BitWidth(a.ElementType) / 8);
        return Constants.Count > 0 ? 1 : (int)Math.Clamp((4L << 20) / Math.Max(1, sampleBytes), 1, wanted);
    }

    public long[]? Labels { get; }

    public int Count { get; }

    public string Source { get; }

    /// <summary>Inputs made rather than read (<see cref="DistilledData"/>): one array per model input, <paramref name="count"/> rows each, no labels.</summary>
    public static CalibrationSet Synthesized(IReadOnlyDictionary<string, NpyArray> inputs, int count, string source) =>
        new(inputs, new Dictionary<string, NpyArray>(), null, count, source);

    public static CalibrationSet Load(DataSource source, OnnxModel model, string? specFile = null) =>
        Load(source.Path, model, source.Labels, source.Samples, source.Seed, specFile, source.Line, source.Column);

    public static CalibrationSet Load(string path, OnnxModel model, string? labelsName, int? samples, int seed,
        string? specFile = null, int line = 0, int column = 0)
    {
        var arrays = ArrayFile.Read(path);
        CompressException Mismatch(string message) =>
            specFile is null ? CompressException.Error(DiagnosticCodes.DataMismatch, message, path)
                : CompressException.Error(DiagnosticCodes.DataMismatch, $"{message} (data file {path})", specFile, line, column);

        var graph = model.Proto.Graph;
        var initializers = new HashSet<string>(graph.Initializer.Select(i => i.Name));
        var modelInputs = graph.Input.Where(i => !initializers.Contains(i.Name)).ToList();
        var candidates = arrays.Where(a => a.Key != labelsName).ToDictionary(a => a.Key, a => a.Value);
        var inputs = new Dictionary<string, NpyArray>();
        var constants = new Dictionary<string, NpyArray>();
        foreach (var input in modelInputs)
        {
            if (!candidates.TryGetValue(input.Name, out var array))
            {
                if (modelInputs.Count == 1 && candidates.Count == 1)
                {
                    array = candidates.Values.Single() with { Name = input.Name };
                }
                else
                {
                    throw Mismatch($"no array named '{input.Name}' for model input '{input.Name}'; the file has {string.Join(", ", arrays.Keys)}");
                }
            }

            var expected = input.Type?.TensorType?.ElemType ?? 0;
            if (expected != 0 && expected != (int)array.ElementType)
            {
                throw Mismatch($"array '{array.Name}' holds {OnnxElementTypes.Name((int)array.ElementType)} but model input '{input.Name}' takes {OnnxElementTypes.Name(expected)}");
            }

            CheckShape(input, array, Mismatch);
            var first = input.Type?.TensorType?.Shape?.Dim is { Count: > 0 } d && d[0].ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue ? d[0].DimValue : 0;
            if (array.Shape.Length == 0 || (first > 1 && array.Shape[0] == first))
            {
                constants[input.Name] = array;
            }
            else
            {
                inputs[input.Name] = array;
            }
        }

        if (inputs.Count == 0)
        {
            throw Mismatch($"no input takes samples along its first dimension (all of {string.Join(", ", constants.Keys)} are fixed)");
        }

        var rows = inputs.Values.Select(a => a.Shape.Length == 0 ? 1 : a.Shape[0]).Distinct().ToList();
        if (rows.Count != 1)
        {
            throw Mismatch($"input arrays have different sample counts ({string.Join(", ", rows)})");
        }

        var count = (int)rows[0];
        long[]? labels = null;
        if (labelsName is not null)
        {
            if (!arrays.TryGetValue(labelsName, out var labelArray))
            {
                throw Mismatch($"no labels array '{labelsName}'; the file has {string.Join(", ", arrays.Keys)}");
            }

            labels = labelArray.ToInt64();
            if (labels.Length != count)
            {
                throw Mismatch($"labels array '{labelsName}' has {labels.Length} entries for {count} samples");
            }
        }

        if (samples is { } wanted && wanted < count)
        {
            // Seeded partial Fisher–Yates: the same seed always picks the same samples, in sorted order.
            var random = new Random(seed);
            var order = Enumerable.Range(0, count).Select(i => (long)i).ToArray();
            for (var i = 0; i < wanted; i++)
            {
                var j = random.Next(i, count);
                (order[i], order[j]) = (order[j], order[i]);
            }

            var chosen = order.Take(wanted).Order().ToArray();
            inputs = inputs.ToDictionary(p => p.Key, p => p.Value.Take(chosen));
            labels = labels is null ? null : chosen.Select(i => labels[i]).ToArray();
            count = wanted;
        }

        return new CalibrationSet(inputs, constants, labels, count, path);
    }

    private static void CheckShape(ValueInfoProto input, NpyArray array, Func<string, CompressException> mismatch)
    {
        var dims = input.Type?.TensorType?.Shape?.Dim;
        if (dims is null)
        {
            return;
        }

        if (dims.Count != array.Shape.Length)
        {
            throw mismatch($"array '{array.Name}' has shape ({string.Join(", ", array.Shape)}) but model input '{input.Name}' has rank {dims.Count}");
        }

        for (var i = 1; i < dims.Count; i++)
        {
            if (dims[i].ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue && dims[i].DimValue != array.Shape[i])
            {
                throw mismatch($"array '{array.Name}' has shape ({string.Join(", ", array.Shape)}); model input '{input.Name}' needs {dims[i].DimValue} in dimension {i}");
            }
        }
    }
}
