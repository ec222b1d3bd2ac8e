using Compress.Core.Calibration;
using Compress.Core.Onnx;
using Compress.Core.Reports;

namespace Compress.Core.Evaluation;

/// <summary>
/// Original against compressed in ONNX Runtime for speed, one thread, at batch 1 and batch N (the largest of
/// <see cref="Batch"/> both models and the data allow), each for about <see cref="Budget"/> at most (plus a warm-up
/// and three runs). A figure for the report, never a check.
/// </summary>
public static class LatencyComparison
{
    private const int Batch = 32;

    private static readonly TimeSpan Budget = TimeSpan.FromSeconds(1);

    /// <summary>Median milliseconds of the original (run from <paramref name="originalPath"/>) and the compressed model on the data.</summary>
    public static LatencyFigures Measure(string originalPath, OnnxModel compressed, CalibrationSet data)
    {
        using var a = OrtModelRunner.FromFile(originalPath, arena: true);
        using var b = new OrtModelRunner(compressed, arena: true);
        var n = Math.Min(Math.Min(a.MaxBatch(Batch, data), b.MaxBatch(Batch, data)), data.Count);
        return new LatencyFigures(n,
            a.MedianLatencyMs(data, 1, 31, Budget), b.MedianLatencyMs(data, 1, 31, Budget),
            a.MedianLatencyMs(data, n, 11, Budget), b.MedianLatencyMs(data, n, 11, Budget));
    }

    /// <summary>Median batch-1 milliseconds of one model over at most <paramref name="repeats"/> runs (31, as <see cref="Measure"/> measures it) in at most <paramref name="budget"/>.</summary>
    public static double Batch1Ms(OnnxModel model, CalibrationSet data, TimeSpan budget, int repeats = 31)
    {
        using var runner = new OrtModelRunner(model, arena: true);
        return runner.MedianLatencyMs(data, 1, repeats, budget);
    }
}
