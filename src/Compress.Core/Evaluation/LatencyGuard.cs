using Compress.Core.Calibration;
using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;

namespace Compress.Core.Evaluation;

/// <summary>
/// The latency guard (<c>constraints.maxLatencyRatio</c>; algorithms.md §15): int8 is not always faster on CPU, so
/// the model about to ship is timed against its source at batch 1 (one thread, median), and where it is slower than
/// the ratio allows, each quantized region (<see cref="QdqRegions"/>) may run float instead — its activation Q→DQ pairs
/// bypassed, its weights still stored in int8 — whenever that is measured faster: regions one at a time first, then
/// greedily together, against all of them float. What it chose is said in the report's notes; a model still past the
/// ratio is not written (CMP0030).
/// </summary>
public static class LatencyGuard
{
    /// <summary>A change must gain at least this fraction to count: below it, timing noise decides.</summary>
    public const double Margin = 0.03;

    /// <summary>Past this many regions only all-quantized and all-float are compared (each region costs a timing).</summary>
    public const int MaxRegionsTimedAlone = 64;

    private static readonly TimeSpan Budget = TimeSpan.FromSeconds(0.5);

    /// <summary>Which regions run float, and the batch-1 milliseconds measured for that choice.</summary>
    public sealed record Choice(IReadOnlySet<string> FloatRegions, double Milliseconds, double SourceMilliseconds, string Note);

    /// <summary>Times the ONNX model <paramref name="model"/> would ship as, chooses, and applies the choice to it in place.</summary>
    public static Choice Apply(OnnxModel model, string sourcePath, CalibrationSet data, double maxRatio, Action<string> progress)
    {
        double Time(OnnxModel m)
        {
            using var runner = new OrtModelRunner(m, arena: true);
            return runner.MedianLatencyMs(data, 1, 31, Budget);
        }

        double source;
        using (var runner = OrtModelRunner.FromFile(sourcePath, arena: true))
        {
            source = runner.MedianLatencyMs(data, 1, 31, Budget);
        }

        var regions = QdqRegions.Find(model).Select(OnnxGraph.Describe).ToList();
        progress($"latency guard: {regions.Count} quantized regions, source {source:0.###} ms at batch 1");
        var choice = Choose(regions, set => Time(set.Count == 0 ? model : QdqRegions.Float(Clone(model), set)), source, maxRatio);
        if (choice.FloatRegions.Count > 0)
        {
            QdqRegions.Float(model, choice.FloatRegions);
        }

        return choice;
    }

    /// <summary>
    /// The decision alone, on any timer (tests inject one): <paramref name="time"/> gives batch-1 milliseconds with the
    /// given regions float. Keeps the model as it is when it meets the ratio; else the fastest of as-is, the greedy set
    /// and all-float, preferring fewer float regions unless more gain at least <see cref="Margin"/>.
    /// </summary>
    /// <summary>
    /// The greedy set: each item timed alone (<paramref name="time"/> of the set with it), those faster than
    /// <paramref name="baseline"/> by <see cref="Margin"/> added fastest first (ties by name) while each still gains the
    /// margin. Returns the set, its time and the items in the order they were added.
    /// </summary>
    public static (HashSet<string> Set, double Ms, List<string> Added) Greedy(IReadOnlyList<string> items, Func<IReadOnlySet<string>, double> time, double baseline)
    {
        var (set, best, added) = (new HashSet<string>(StringComparer.Ordinal), baseline, new List<string>());
        var alone = items.Select(i => (Item: i, Ms: time(new HashSet<string>([i], StringComparer.Ordinal)))).ToList();
        foreach (var (item, _) in alone.Where(a => a.Ms < baseline * (1 - Margin)).OrderBy(a => a.Ms).ThenBy(a => a.Item, StringComparer.Ordinal))
        {
            var trial = new HashSet<string>(set, StringComparer.Ordinal) { item };
            var ms = time(trial);
            if (ms < best * (1 - Margin))
            {
                (set, best) = (trial, ms);
                added.Add(item);
            }
        }

        return (set, best, added);
    }

    public static Choice Choose(IReadOnlyList<string> regions, Func<IReadOnlySet<string>, double> time, double source, double maxRatio)
    {
        var none = new HashSet<string>(StringComparer.Ordinal);
        var quantized = time(none);
        if (quantized <= maxRatio * source || regions.Count == 0)
        {
            return new Choice(none, quantized, source,
                $"latency guard: {quantized:0.###} ms at batch 1 against the source's {source:0.###} ms ({quantized / source:0.00}×, limit {maxRatio:0.##}×); every quantized region kept");
        }

        var all = new HashSet<string>(regions, StringComparer.Ordinal);
        var allFloat = time(all);
        var (greedy, greedyTime, _) = regions.Count <= MaxRegionsTimedAlone ? Greedy(regions, time, quantized) : (none, quantized, []);

        var (chosen, chosenTime) = (none, quantized);
        foreach (var (set, ms) in new[] { (greedy, greedyTime), (all, allFloat) })
        {
            if (ms < chosenTime * (1 - Margin))
            {
                (chosen, chosenTime) = (set, ms);
            }
        }

        var what = chosen.Count == 0 ? "every quantized region kept (no float form was faster)"
            : chosen.Count == regions.Count ? $"all {regions.Count} quantized regions run float (int8 weights kept)"
            : $"{chosen.Count} of {regions.Count} quantized regions run float (int8 weights kept): {string.Join(", ", chosen.Order(StringComparer.Ordinal))}";
        return new Choice(chosen, chosenTime, source,
            $"latency guard: as quantized {quantized:0.###} ms at batch 1 against the source's {source:0.###} ms (limit {maxRatio:0.##}×); all float {allFloat:0.###} ms; " +
            $"{what}: {chosenTime:0.###} ms ({chosenTime / source:0.00}×)");
    }

    private static OnnxModel Clone(OnnxModel model) => new(model.Proto.Clone());
}

/// <summary>
/// Quantized regions of a QDQ model: compute nodes (not Q/DQ themselves) reading an activation through a
/// QuantizeLinear→DequantizeLinear pair, which ONNX Runtime fuses into an integer kernel. A region runs float when its
/// node reads the float activation before the pair instead; pairs nothing reads any more are removed.
/// </summary>
public static class QdqRegions
{
    public static IReadOnlyList<NodeProto> Find(OnnxModel model)
    {
        var graph = model.Graph;
        return graph.Nodes.Where(n => !IsQdq(n) && n.Input.Any(i => QuantizedActivation(graph, i) is not null)).ToList();
    }

    /// <summary>Makes the named regions read their float activations (in place) and returns the model.</summary>
    public static OnnxModel Float(OnnxModel model, IReadOnlySet<string> regions)
    {
        var graph = model.Graph;
        var pairs = new List<(NodeProto Q, NodeProto Dq)>();
        foreach (var node in graph.Nodes.Where(n => regions.Contains(OnnxGraph.Describe(n))).ToList())
        {
            for (var i = 0; i < node.Input.Count; i++)
            {
                if (QuantizedActivation(graph, node.Input[i]) is { } pair)
                {
                    node.Input[i] = pair.Q.Input[0];
                    pairs.Add(pair);
                }
            }
        }

        graph.Refresh();
        foreach (var (q, dq) in pairs.Distinct())
        {
            if (graph.Nodes.Contains(dq) && graph.GetConsumers(dq.Output[0]).Count == 0 && !graph.IsGraphOutput(dq.Output[0]))
            {
                graph.Remove(dq);
            }

            if (graph.Nodes.Contains(q) && graph.GetConsumers(q.Output[0]).Count == 0 && !graph.IsGraphOutput(q.Output[0]))
            {
                graph.Remove(q);
                foreach (var constant in q.Input.Skip(1).Concat(dq.Input.Skip(1)).Where(c => c.Length > 0).Distinct())
                {
                    graph.RemoveInitializerIfUnused(constant);
                }
            }
        }

        return model;
    }

    private static bool IsQdq(NodeProto node) => node.OpType is "QuantizeLinear" or "DequantizeLinear";

    /// <summary>The Q→DQ pair a value comes out of, when it is a quantized activation (not a constant's DQ).</summary>
    private static (NodeProto Q, NodeProto Dq)? QuantizedActivation(OnnxGraph graph, string value) =>
        graph.GetProducer(value) is { OpType: "DequantizeLinear" } dq && graph.GetProducer(dq.Input[0]) is { OpType: "QuantizeLinear" } q ? (q, dq) : null;
}
