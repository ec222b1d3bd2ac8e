using System.Globalization;
using Compress.Core.Evaluation;
using Compress.Core.Onnx;

namespace Compress.Core.Passes.Factorization;

/// <summary>
/// The factorize step's measured check (algorithms.md §16), run only where the spec lets timing decide
/// (<c>constraints.maxLatencyRatio</c>, as the latency guard): fewer multiply-adds need not mean less time (a second
/// kernel, a rank ONNX Runtime's blocked kernels handle poorly), so the whole model is timed at batch 1 (one thread,
/// median) with every factorization, with none (the model before the step), and with each layer undone alone; the
/// layers whose undoing is faster by the guard's margin are undone greedily, and where the model before the step is
/// still faster than the best found, the step is undone whole. Smaller but not measurably slower stays.
/// </summary>
internal static class FactorizationLatency
{
    private const int Repeats = 201;

    private static readonly TimeSpan Budget = TimeSpan.FromSeconds(0.5);

    /// <summary>The layers to undo (by node name) and the batch-1 milliseconds measured for that choice.</summary>
    public sealed record Choice(IReadOnlySet<string> Undone, double Milliseconds, double BeforeMilliseconds, double FactorizedMilliseconds, string Note);

    /// <summary>Times the choices on the context's model and calibration data, undoes what was measured slower, and returns the layers kept.</summary>
    public static List<FactorizedLayer> Apply(CompressionContext context, List<FactorizedLayer> layers, string step)
    {
        if (context.Model.ExternalData.Count > 0)
        {
            context.Notes.Add($"{step}: not timed on a model with external data (each timing would copy its weights); kept by the multiply-add rule");
            return layers;
        }

        var data = context.Calibration;
        double Time(IReadOnlySet<string> undone)
        {
            var copy = new OnnxModel(context.Model.Proto.Clone());
            foreach (var layer in layers.Where(l => undone.Contains(l.Node)))
            {
                layer.Undo(copy);
            }

            using var runner = new OrtModelRunner(copy, arena: true);
            return runner.MedianLatencyMs(data, 1, Repeats, Budget);
        }

        context.Progress($"{step}: timing {layers.Count} factorized layer{(layers.Count == 1 ? "" : "s")} at batch 1");
        var choice = Choose(layers.Select(l => l.Node).ToList(), Time);
        foreach (var layer in layers.Where(l => choice.Undone.Contains(l.Node)))
        {
            layer.Undo(context.Model);
            if (!layer.RecordExisted)
            {
                context.Layers.Remove(layer.Weight.Name);
            }
            else if (context.Layers.TryGetValue(layer.Weight.Name, out var record))
            {
                record.Store([.. layer.StoredBefore]);
                record.RelativeError -= layer.Error;
            }
        }

        context.Notes.Add($"{step}: {choice.Note}");
        return layers.Where(l => !choice.Undone.Contains(l.Node)).ToList();
    }

    /// <summary>
    /// The decision alone, on any timer (tests inject one): <paramref name="time"/> gives batch-1 milliseconds with the
    /// given layers undone. Layers whose undoing alone gains at least <see cref="LatencyGuard.Margin"/> are undone
    /// greedily (fastest first) while each gains the margin; then, where the model before the step (every layer undone)
    /// beats the best by the margin, every layer is undone.
    /// </summary>
    public static Choice Choose(IReadOnlyList<string> layers, Func<IReadOnlySet<string>, double> time)
    {
        var all = new HashSet<string>(layers, StringComparer.Ordinal);
        var before = time(all);
        var factorized = time(new HashSet<string>(StringComparer.Ordinal));
        var (undone, best, slower) = layers.Count > 1 && layers.Count <= LatencyGuard.MaxRegionsTimedAlone
            ? LatencyGuard.Greedy(layers, time, factorized)
            : (new HashSet<string>(StringComparer.Ordinal), factorized, []);

        string Ms(double value) => value.ToString("0.###", CultureInfo.InvariantCulture);
        var timed = $"batch 1: before the step {Ms(before)} ms, every layer factorized {Ms(factorized)} ms";
        if (before < best * (1 - LatencyGuard.Margin))
        {
            return new Choice(all, before, before, factorized,
                $"{timed}; the best kept set measured {Ms(best)} ms, slower than before the step: every factorization undone ({layers.Count} layer{(layers.Count == 1 ? "" : "s")})");
        }

        var what = undone.Count == 0
            ? "every factorization kept (none measured slower)"
            : $"undone as measured slower: {string.Join(", ", slower)}; kept {layers.Count - undone.Count} of {layers.Count}";
        return new Choice(undone, best, before, factorized, $"{timed}; {what}: {Ms(best)} ms ({best / before:0.00}× the time before the step)");
    }
}
