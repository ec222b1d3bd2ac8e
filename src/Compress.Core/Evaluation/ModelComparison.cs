using System.Text.Json.Serialization;
using Compress.Core.Calibration;
using Compress.Core.Data;
using Compress.Core.Fidelity;
using Compress.Core.Onnx;
using Microsoft.ML.OnnxRuntime;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Core.Evaluation;

/// <summary>
/// How close a compressed model stays to its original on the same samples: every float output's fidelity by its
/// kind, and the one output (<see cref="Output"/>, <c>data.evaluation.output</c> or the first) that constraints,
/// the default floor and <c>"sparsity": "auto"</c> judge. The top-level figures are that output's.
/// </summary>
public sealed record ComparisonMetrics(int Samples, string Output, IReadOnlyList<OutputFidelity> Outputs)
{
    [JsonIgnore]
    public OutputFidelity Primary => Outputs.First(o => o.Name == Output);

    public OutputKind Kind => Primary.Kind;

    public double? OriginalAccuracy => Primary.OriginalAccuracy;

    public double? CompressedAccuracy => Primary.CompressedAccuracy;

    /// <summary>Top-1 agreement of the judged output; null for features (no class axis to agree on).</summary>
    public double? Agreement => Primary.Agreement;

    public long AgreementPredictions => Primary.Predictions;

    public double SqnrDb => Primary.SqnrDb;

    public double? MeanCosine => Primary.MeanCosine;

    public double? P1Cosine => Primary.P1Cosine;

    public double? AccuracyDrop => Primary.AccuracyDrop;
}

/// <summary>The data and choices of one comparison: which output is judged and which metric's kind it is measured as.</summary>
public sealed record FidelityChoice(string? Output = null, string? Metric = null)
{
    public static FidelityChoice From(Compress.Spec.DataSource? evaluation) => new(evaluation?.Output, evaluation?.Metric);
}

/// <summary>The output a comparison was asked to judge is not a float output of the model.</summary>
public sealed class UnknownOutputException(string message) : Exception(message);

public static class ModelComparison
{
    /// <summary>
    /// Runs both models over the data, batch by batch (nothing but the statistics is kept), and measures every
    /// float output. A model input whose name contains "mask" and whose data is <c>[N, T]</c> marks padding: those
    /// positions of <c>[N, T, …]</c> outputs are left out.
    /// </summary>
    /// <param name="originalOnDisk">Whether <paramref name="original"/> is its file unchanged (then ONNX Runtime reads the file).</param>
    public static ComparisonMetrics Compare(OnnxModel original, OnnxModel compressed, CalibrationSet data, FidelityChoice? choice = null,
        int batchSize = 64, bool originalOnDisk = false)
    {
        choice ??= new FidelityChoice();
        using var a = originalOnDisk && original.Path is { } path ? OrtModelRunner.FromFile(path) : new OrtModelRunner(original);
        GC.Collect(); // each session's creation leaves model-sized garbage; the next one should not stack on it
        using var b = new OrtModelRunner(compressed);
        GC.Collect();
        var names = a.OutputNames.Where(n => a.OutputElementType(n) == "float").ToArray();
        var judged = choice.Output ?? names.FirstOrDefault()
            ?? throw new InvalidOperationException("the model has no float32 output to compare");
        if (!names.Contains(judged))
        {
            throw new UnknownOutputException($"'{judged}' is not a float32 output of the model (outputs: {string.Join(", ", a.OutputNames)})");
        }

        var mask = AttentionMask(data);
        var comparisons = names.Select(n => new OutputComparison(n, data.Labels, n == judged ? FidelityMetrics.KindFor(choice.Metric) : null)).ToArray();
        var batch = Math.Min(a.MaxBatch(batchSize, data), b.MaxBatch(batchSize, data));
        for (var start = 0; start < data.Count; start += batch)
        {
            var count = Math.Min(batch, data.Count - start);
            using var ra = a.RunBatch(data, start, count, names);
            using var rb = b.RunBatch(data, start, count, names);
            var valid = mask is null ? [] : Valid(mask, start, count);
            for (var i = 0; i < names.Length; i++)
            {
                var shape = ra[i].GetTensorTypeAndShape().Shape;
                var masked = valid.Length > 0 && shape.Length >= 2 && shape[0] == count && shape[1] == mask!.Shape[1];
                comparisons[i].Add(new FidelityBatch(ra[i].GetTensorDataAsSpan<float>(), rb[i].GetTensorDataAsSpan<float>(), shape, start, count,
                    masked ? valid : []), mask is not null);
            }
        }

        return new ComparisonMetrics(data.Count, judged, comparisons.Select(c => c.Result()).ToList());
    }

    /// <summary>The data of a <c>[N, T]</c> model input named like an attention mask, if there is one.</summary>
    internal static NpyArray? AttentionMask(CalibrationSet data) =>
        data.Inputs.Where(p => p.Key.Contains("mask", StringComparison.OrdinalIgnoreCase) && p.Value.Shape.Length == 2)
            .Select(p => p.Value).FirstOrDefault();

    private static bool[] Valid(NpyArray mask, int start, int count)
    {
        var rows = mask with { Shape = [count, mask.Shape[1]], Data = mask.Rows(start, count).ToArray() };
        return rows.ElementType switch
        {
            DataType.Float => rows.As<float>().ToArray().Select(v => v != 0).ToArray(),
            DataType.Bool => rows.Data.Select(v => v != 0).ToArray(),
            _ => rows.ToInt64().Select(v => v != 0).ToArray(),
        };
    }
}
