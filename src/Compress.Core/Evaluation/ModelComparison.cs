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
        var accumulator = new ComparisonAccumulator(data.Labels);
        for (var start = 0; start < data.Count; start += batch)
        {
            var count = Math.Min(batch, data.Count - start);
            using var ra = a.RunBatch(data, start, count, first);
            using var rb = b.RunBatch(data, start, count, first);
            var shape = ra[0].GetTensorTypeAndShape().Shape;
            accumulator.Add(ra[0].GetTensorDataAsSpan<float>(), rb[0].GetTensorDataAsSpan<float>(), shape.Length == 0 ? 1 : (int)shape[^1], start, count);
        }

        return accumulator.Result(data.Count);
    }
}

/// <summary>
/// The comparison's statistics, fed batch by batch with the first output of the original (y) and the compressed
/// model (z): top-1 agreement over every prediction, accuracy against labels (one prediction per sample only),
/// SQNR over all values. Shared by the ONNX and the TorchScript paths.
/// </summary>
public sealed class ComparisonAccumulator(long[]? labels)
{
    private long _predictions, _agree, _originalCorrect, _compressedCorrect;
    private double _signal, _noise;
    private int _perSample = 1;

    /// <summary>Samples [start, start + count): outputs with <paramref name="classes"/> values per prediction.</summary>
    public void Add(ReadOnlySpan<float> y, ReadOnlySpan<float> z, int classes, int start, int count)
    {
        _perSample = Math.Max(1, y.Length / classes / count);
        for (var row = 0; row + classes <= y.Length; row += classes)
        {
            var p = Classification.ArgMax(y.Slice(row, classes));
            var q = Classification.ArgMax(z.Slice(row, classes));
            _predictions++;
            _agree += p == q ? 1 : 0;
            if (labels is not null && _perSample == 1)
            {
                var label = labels[start + row / classes];
                _originalCorrect += p == label ? 1 : 0;
                _compressedCorrect += q == label ? 1 : 0;
            }
        }

        for (var i = 0; i < y.Length; i++)
        {
            double d = y[i] - z[i];
            _signal += (double)y[i] * y[i];
            _noise += d * d;
        }
    }

    public ComparisonMetrics Result(int samples)
    {
        var labelled = labels is not null && _perSample == 1;
        return new ComparisonMetrics(
            samples,
            labelled ? _originalCorrect / (double)samples : null,
            labelled ? _compressedCorrect / (double)samples : null,
            _predictions == 0 ? 1 : _agree / (double)_predictions,
            _predictions,
            _noise == 0 ? double.PositiveInfinity : 10 * Math.Log10(_signal / _noise));
    }
}
