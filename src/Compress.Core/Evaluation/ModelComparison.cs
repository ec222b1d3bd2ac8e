using Compress.Core.Calibration;
using Compress.Core.Onnx;
using Microsoft.ML.OnnxRuntime;

namespace Compress.Core.Evaluation;

/// <summary>How close a compressed model stays to its original on the same samples (first output).</summary>
public sealed record ComparisonMetrics(
    int Samples,
    double? OriginalAccuracy,
    double? CompressedAccuracy,
    double Agreement,
    long AgreementPredictions,
    double SqnrDb)
{
    public double? AccuracyDrop => OriginalAccuracy - CompressedAccuracy;
}

public static class ModelComparison
{
    /// <summary>
    /// Runs both models over the data, batch by batch (nothing but the statistics is kept). Predictions are argmax
    /// over the last axis of the first output: one per sample for [N, C] outputs, one per time step for [N, T, C]
    /// (sequence models); agreement counts them all. SQNR = 10·log10(Σ y² / Σ (y − ŷ)²) over the first output.
    /// </summary>
    public static ComparisonMetrics Compare(OnnxModel original, OnnxModel compressed, CalibrationSet data, int batchSize = 64)
    {
        using var a = new OrtModelRunner(original);
        using var b = new OrtModelRunner(compressed);
        string[] first = [a.OutputNames[0]];
        var batch = Math.Min(a.MaxBatch(batchSize), b.MaxBatch(batchSize));
        long predictions = 0, agree = 0, originalCorrect = 0, compressedCorrect = 0;
        double signal = 0, noise = 0;
        var perSample = 1;
        for (var start = 0; start < data.Count; start += batch)
        {
            var count = Math.Min(batch, data.Count - start);
            using var ra = a.RunBatch(data, start, count, first);
            using var rb = b.RunBatch(data, start, count, first);
            var shape = ra[0].GetTensorTypeAndShape().Shape;
            var y = ra[0].GetTensorDataAsSpan<float>();
            var z = rb[0].GetTensorDataAsSpan<float>();
            var classes = shape.Length == 0 ? 1 : (int)shape[^1];
            perSample = Math.Max(1, y.Length / classes / count);
            for (var row = 0; row + classes <= y.Length; row += classes)
            {
                var p = Classification.ArgMax(y.Slice(row, classes));
                var q = Classification.ArgMax(z.Slice(row, classes));
                predictions++;
                agree += p == q ? 1 : 0;
                if (data.Labels is not null && perSample == 1)
                {
                    var label = data.Labels[start + row / classes];
                    originalCorrect += p == label ? 1 : 0;
                    compressedCorrect += q == label ? 1 : 0;
                }
            }

            for (var i = 0; i < y.Length; i++)
            {
                double d = y[i] - z[i];
                signal += (double)y[i] * y[i];
                noise += d * d;
            }
        }

        var labelled = data.Labels is not null && perSample == 1;
        return new ComparisonMetrics(
            data.Count,
            labelled ? originalCorrect / (double)data.Count : null,
            labelled ? compressedCorrect / (double)data.Count : null,
            predictions == 0 ? 1 : agree / (double)predictions,
            predictions,
            noise == 0 ? double.PositiveInfinity : 10 * Math.Log10(signal / noise));
    }
}
