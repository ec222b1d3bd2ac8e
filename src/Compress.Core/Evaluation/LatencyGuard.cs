using System.Globalization;
using Compress.Core.Calibration;
using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Torch;
using TorchSharp;

namespace Compress.Core.Evaluation;

/// <summary>
/// The latency guard (<c>constraints.maxLatencyRatio</c>; algorithms.md §15): int8 is not always faster on CPU, so
/// the model about to ship is timed (one thread, median, at batch 1 and batch N) and each quantized region
/// (<see cref="QdqRegions"/>) keeps whichever of its forms is measured faster: int8, float activations over its int8
/// weights (<see cref="RegionForm.Float"/>: the file stays as small), or float activations and float weights
/// (<see cref="RegionForm.FloatWeights"/>: no DequantizeLinear of the weights at run time, a larger file). Regions are
/// timed alone in each form, then added greedily, against every region float. What it chose is said in the report's
/// notes; a model still past the ratio against its source is not written (CMP0030).
/// </summary>
public static class LatencyGuard
{
    /// <summary>A change must gain at least this fraction to count: below it, timing noise decides.</summary>
    public const double Margin = 0.03;

    /// <summary>
    /// Whether <paramref name="milliseconds"/> meets the limit <paramref name="maxRatio"/> × <paramref name="source"/>, up to
    /// <see cref="Margin"/>: timings closer than that are the same to the guard, so a model as fast as its source does not
    /// fail a limit of 1.0 on the noise of a shared machine (the pruned Fashion CNN plus int8, all float in its fastest
    /// form, measured 1.00× and 1.01× its float source and failed).
    /// </summary>
    public static bool Within(double milliseconds, double source, double maxRatio) => milliseconds <= maxRatio * source * (1 + Margin);

    /// <summary>
    /// Past this many regions they are timed by kind instead (<see cref="QdqRegions.Kind"/>: every depthwise 3×3 Conv
    /// together, every 1×1 Conv, every MatMul, …), each region costing a timing otherwise; past this many kinds only
    /// all-quantized and all-float are compared.
    /// </summary>
    public const int MaxRegionsTimedAlone = 64;

    /// <summary>The batch N the forms are also timed at (or the largest the model and the data allow).</summary>
    public const int BatchN = 32;

    private static readonly TimeSpan Budget = TimeSpan.FromSeconds(0.5);

    private static readonly IReadOnlyDictionary<string, RegionForm> AllInt8 = new Dictionary<string, RegionForm>(StringComparer.Ordinal);

    /// <summary>Median milliseconds of one form of the model at batch 1 and at batch N.</summary>
    public readonly record struct Timing(double Batch1, double BatchN);

    /// <summary>
    /// The form of each region that does not stay int8 (absent: int8), the batch-1 milliseconds measured for that
    /// choice and for the source, and the note.
    /// </summary>
    public sealed record Choice(IReadOnlyDictionary<string, RegionForm> Forms, double Milliseconds, double SourceMilliseconds, string Note)
    {
        public IReadOnlySet<string> FloatRegions => Forms.Keys.ToHashSet(StringComparer.Ordinal);
    }

    /// <summary>Times the ONNX model <paramref name="model"/> would ship as, chooses, and applies the choice to it in place.</summary>
    public static Choice Apply(OnnxModel model, string sourcePath, CalibrationSet data, double maxRatio, Action<string> progress)
    {
        // The source stays open: each form is timed at batch 1 alternately with it, and counted by its ratio to the source
        // timed beside it (times the source's first timing), so the machine's speed drifting between timings — on a shared
        // machine, by tens of percent — does not decide a form or the limit.
        using var sourceRunner = OrtModelRunner.FromFile(sourcePath, arena: true);
        var source = sourceRunner.MedianLatencyMs(data, 1, 31, Budget);
        var batch = Math.Min(sourceRunner.MaxBatch(BatchN, data), data.Count);

        Timing Time(OnnxModel m)
        {
            using var runner = new OrtModelRunner(m, arena: true);
            var (ms, beside) = runner.PairedMedianLatencyMs(sourceRunner, data, 1, 31, Budget);
            return new Timing(ms / beside * source, runner.MedianLatencyMs(data, runner.MaxBatch(batch, data), 11, Budget));
        }

        var regions = QdqRegions.Find(model);
        var weighted = regions.Where(n => QdqRegions.ConstantInputs(model.Graph, n).Any()).Select(OnnxGraph.Describe).ToHashSet(StringComparer.Ordinal);
        progress($"latency guard: {regions.Count} quantized regions, source {source:0.###} ms at batch 1");
        var kinds = regions.ToDictionary(OnnxGraph.Describe, n => QdqRegions.Kind(model.Graph, n), StringComparer.Ordinal);
        var choice = Choose(regions.Select(OnnxGraph.Describe).ToList(), weighted,
            forms => Time(forms.Count == 0 ? model : QdqRegions.Apply(Clone(model), forms)), source, maxRatio, batch, kinds);
        if (choice.Forms.Count > 0)
        {
            QdqRegions.Apply(model, choice.Forms);
        }

        return choice;
    }

    /// <summary>
    /// The greedy set: each item timed alone (<paramref name="time"/> of the set with it), those faster than
    /// <paramref name="baseline"/> by <see cref="Margin"/> added fastest first (ties by name) while each still gains the
    /// margin. Returns the set, its time and the items in the order they were added.
    /// </summary>
    public static (HashSet<string> Set, double Ms, List<string> Added) Greedy(IReadOnlyList<string> items, Func<IReadOnlySet<string>, double> time, double baseline) =>
        Greedy(items, time, baseline, (a, b) => a < b * (1 - Margin), ms => ms);

    /// <summary>The same on any measure: <paramref name="faster"/> says whether one beats the other, <paramref name="order"/> ranks the items timed alone.</summary>
    public static (HashSet<string> Set, T Time, List<string> Added) Greedy<T>(IReadOnlyList<string> items, Func<IReadOnlySet<string>, T> time, T baseline,
        Func<T, T, bool> faster, Func<T, double> order)
    {
        var (set, best, added) = (new HashSet<string>(StringComparer.Ordinal), baseline, new List<string>());
        var alone = items.Select(i => (Item: i, Time: time(new HashSet<string>([i], StringComparer.Ordinal)))).ToList();
        foreach (var (item, _) in alone.Where(a => faster(a.Time, baseline)).OrderBy(a => order(a.Time)).ThenBy(a => a.Item, StringComparer.Ordinal))
        {
            var trial = new HashSet<string>(set, StringComparer.Ordinal) { item };
            var t = time(trial);
            if (faster(t, best))
            {
                (set, best) = (trial, t);
                added.Add(item);
            }
        }

        return (set, best, added);
    }

    /// <summary>
    /// The decision alone, on any timer (tests inject one): <paramref name="time"/> gives the milliseconds of the model
    /// with the given regions in the given forms (the rest int8); a form timed once is not timed again. First the forms
    /// that keep the file's size (int8, or float over the int8 weights): each region timed alone in float, those faster
    /// alone added greedily (fastest first, ties by name) while each gains <see cref="Margin"/>, then the fastest of as
    /// quantized, the greedy forms and every region float (the earlier unless a later gains the margin). Only where that
    /// is still past the ratio are float weights tried as well (regions reading constant weights,
    /// <paramref name="weighted"/>; taken over a region's float form only where they gain the margin), the same way, with
    /// every region float with float weights among the options. A form counts as faster only when batch N does not get
    /// slower by more than the margin. Past <see cref="MaxRegionsTimedAlone"/> regions, the regions of one kind
    /// (<paramref name="kinds"/>, when given) are timed and chosen together as one.
    /// </summary>
    public static Choice Choose(IReadOnlyList<string> regions, IReadOnlySet<string> weighted, Func<IReadOnlyDictionary<string, RegionForm>, Timing> time,
        double source, double maxRatio, int batch = BatchN, IReadOnlyDictionary<string, string>? kinds = null)
    {
        var timed = new Dictionary<string, (IReadOnlyDictionary<string, RegionForm> Forms, Timing Time)>(StringComparer.Ordinal);
        Timing Time(IReadOnlyDictionary<string, RegionForm> forms)
        {
            var key = string.Join(";", forms.OrderBy(f => f.Key, StringComparer.Ordinal).Select(f => $"{f.Key}={f.Value}"));
            return (timed.TryGetValue(key, out var known) ? known : timed[key] = (forms, time(forms))).Time;
        }

        var quantized = Time(AllInt8);
        if (regions.Count == 0)
        {
            return new Choice(AllInt8, quantized.Batch1, source, $"latency guard: {Ms(quantized.Batch1)} ms at batch 1 against the source's {Ms(source)} ms; no quantized region");
        }

        var allFloat = regions.ToDictionary(r => r, _ => RegionForm.Float, StringComparer.Ordinal);
        var allFloatTime = Time(allFloat);
        var units = Units(regions, kinds);
        var (chosen, chosenTime) = Search(regions, units, new HashSet<string>(), Time, quantized, allFloat);
        var grown = false;
        if (!Within(chosenTime.Batch1, source, maxRatio) && weighted.Count > 0)
        {
            var (forms, ms) = Search(regions, units, weighted, Time, quantized, allFloat);
            if (Faster(ms, chosenTime))
            {
                (chosen, chosenTime, grown) = (forms, ms, true);
            }
        }

        // Over the limit, a form within it at batch 1 that batch N vetoed is still better than writing nothing: the fewest
        // float weights (the smaller file), then the fastest at batch 1, then the first timed.
        var vetoed = "";
        if (!Within(chosenTime.Batch1, source, maxRatio) && timed.Values.Where(t => Within(t.Time.Batch1, source, maxRatio))
                .OrderBy(t => t.Forms.Values.Count(f => f == RegionForm.FloatWeights)).ThenBy(t => t.Time.Batch1).FirstOrDefault() is { Forms: not null } within)
        {
            vetoed = $"; a form within the limit at batch 1, taken although slower at batch {batch} ({Ms(within.Time.BatchN)} against {Ms(chosenTime.BatchN)} ms)";
            grown |= within.Forms.Values.Contains(RegionForm.FloatWeights);
            (chosen, chosenTime) = within;
        }

        var what = chosen.Count == 0 ? $"every quantized region kept int8 (no other form was {Margin:P0} faster)"
            : chosen.Count == regions.Count && chosen.Values.All(f => f == RegionForm.Float) ? $"all {regions.Count} quantized regions run float (int8 weights kept)"
            : chosen.Count == regions.Count ? $"all {regions.Count} quantized regions run float, with float weights where they read weights"
            : Describe(regions, chosen, units.Count < regions.Count ? kinds : null);
        var limit = Within(chosenTime.Batch1, source, maxRatio) ? "within" : "over";
        return new Choice(chosen, chosenTime.Batch1, source,
            $"latency guard: as quantized {Ms(quantized.Batch1)} ms at batch 1 ({Ms(quantized.BatchN)} ms at batch {batch}), all float {Ms(allFloatTime.Batch1)} ms, " +
            $"source {Ms(source)} ms (limit {maxRatio:0.##}×){(grown ? "; float weights tried, as the forms keeping the size stayed over the limit" : "")}; " +
            $"{what}: {Ms(chosenTime.Batch1)} ms at batch 1 ({chosenTime.Batch1 / source:0.00}× the source, {limit} the limit), {Ms(chosenTime.BatchN)} ms at batch {batch}{vetoed}");
    }

    /// <summary>
    /// What the search times alone and adds greedily: each region, or past <see cref="MaxRegionsTimedAlone"/> regions the
    /// regions of each kind together (ordered by kind); none past that many kinds.
    /// </summary>
    private static IReadOnlyList<(string Name, IReadOnlyList<string> Regions)> Units(IReadOnlyList<string> regions, IReadOnlyDictionary<string, string>? kinds)
    {
        if (regions.Count <= MaxRegionsTimedAlone)
        {
            return regions.Select(r => (r, (IReadOnlyList<string>)[r])).ToList();
        }

        var byKind = kinds is null ? [] : regions.GroupBy(r => kinds[r], StringComparer.Ordinal).OrderBy(g => g.Key, StringComparer.Ordinal)
            .Select(g => (g.Key, (IReadOnlyList<string>)g.ToList())).ToList();
        return byKind.Count <= MaxRegionsTimedAlone ? byKind : [];
    }

    /// <summary>
    /// One search: each unit alone (its regions float, or with float weights where <paramref name="weighted"/> holds them
    /// and they gain the margin over float), the greedy forms, all float, all float with float weights (where any); the
    /// fastest against as quantized.
    /// </summary>
    private static (IReadOnlyDictionary<string, RegionForm> Forms, Timing Time) Search(IReadOnlyList<string> regions, IReadOnlyList<(string Name, IReadOnlyList<string> Regions)> units,
        IReadOnlySet<string> weighted, Func<IReadOnlyDictionary<string, RegionForm>, Timing> time, Timing quantized, IReadOnlyDictionary<string, RegionForm> allFloat)
    {
        var (greedy, greedyTime) = (AllInt8, quantized);
        if (units.Count > 0)
        {
            // Each unit's form alone: float, or float weights where it holds them and they gain the margin over float.
            IReadOnlyDictionary<string, RegionForm> As(IReadOnlyList<string> members, bool floatWeights) =>
                members.ToDictionary(r => r, r => floatWeights && weighted.Contains(r) ? RegionForm.FloatWeights : RegionForm.Float, StringComparer.Ordinal);
            var forms = new Dictionary<string, IReadOnlyDictionary<string, RegionForm>>(StringComparer.Ordinal);
            foreach (var (name, members) in units)
            {
                var ms = time(As(members, false));
                forms[name] = members.Any(weighted.Contains) && Faster(time(As(members, true)), ms) ? As(members, true) : As(members, false);
            }

            // The greedy set over those forms (each timed alone again: the caller's cache answers).
            IReadOnlyDictionary<string, RegionForm> In(IReadOnlySet<string> set) =>
                set.SelectMany(u => forms[u]).ToDictionary(f => f.Key, f => f.Value, StringComparer.Ordinal);
            var (set, setTime, _) = Greedy(units.Select(u => u.Name).ToList(), s => time(In(s)), quantized, Faster, t => t.Batch1);
            (greedy, greedyTime) = (In(set), setTime);
        }

        var options = new List<IReadOnlyDictionary<string, RegionForm>> { greedy, allFloat };
        if (weighted.Count > 0)
        {
            options.Add(regions.ToDictionary(r => r, r => weighted.Contains(r) ? RegionForm.FloatWeights : RegionForm.Float, StringComparer.Ordinal));
        }

        var (chosen, chosenTime) = (AllInt8, quantized);
        foreach (var forms in options.Where(o => o.Count > 0))
        {
            if (time(forms) is var ms && Faster(ms, chosenTime))
            {
                (chosen, chosenTime) = (forms, ms);
            }
        }

        return (chosen, chosenTime);
    }

    /// <summary>
    /// 'conv1 float (float weights), pool1 float; int8: conv2, fc1, fc2' — at most 8 names of each kind; with
    /// <paramref name="kinds"/> (regions chosen by kind) the kinds instead, with their counts: 'Conv depthwise 3×3 (34)
    /// float; int8: Conv 1×1 (40), …'.
    /// </summary>
    private static string Describe(IReadOnlyList<string> regions, IReadOnlyDictionary<string, RegionForm> forms, IReadOnlyDictionary<string, string>? kinds = null)
    {
        static string List(IEnumerable<string> names) { var all = names.ToList(); return string.Join(", ", all.Take(8)) + (all.Count > 8 ? $", … ({all.Count})" : ""); }
        if (kinds is not null)
        {
            var groups = regions.GroupBy(r => kinds[r], StringComparer.Ordinal).OrderBy(g => g.Key, StringComparer.Ordinal).ToList();
            string Form(IGrouping<string, string> g) => g.Any(r => forms.GetValueOrDefault(r) == RegionForm.FloatWeights) ? " float (float weights)" : " float";
            var floats = List(groups.Where(g => forms.ContainsKey(g.First())).Select(g => $"{g.Key} ({g.Count()}){Form(g)}"));
            var kept = groups.Where(g => !forms.ContainsKey(g.First())).Select(g => $"{g.Key} ({g.Count()})").ToList();
            return kept.Count == 0 ? floats : $"{floats}; int8: {List(kept)}";
        }

        var changed = List(regions.Where(forms.ContainsKey).Select(r => forms[r] == RegionForm.FloatWeights ? $"{r} float (float weights)" : $"{r} float"));
        var int8 = regions.Where(r => !forms.ContainsKey(r)).ToList();
        return int8.Count == 0 ? changed : $"{changed}; int8: {List(int8)}";
    }

    /// <summary>Faster at batch 1 by the margin, and not slower at batch N by more than it.</summary>
    private static bool Faster(Timing a, Timing b) => a.Batch1 < b.Batch1 * (1 - Margin) && a.BatchN <= b.BatchN * (1 + Margin);

    private static string Ms(double value) => value.ToString("0.###", CultureInfo.InvariantCulture);

    private static OnnxModel Clone(OnnxModel model) => new(model.Proto.Clone());
}

/// <summary>The form a quantized region runs in, as the latency guard chose it.</summary>
public enum RegionForm
{
    /// <summary>As quantized: its activations through Q→DQ, fused by ONNX Runtime into an integer kernel.</summary>
    Int8,

    /// <summary>Float activations; its weights stay int8 behind a DequantizeLinear (run at every inference).</summary>
    Float,

    /// <summary>Float activations and float weights (the int8 values dequantized once, into a float initializer).</summary>
    FloatWeights,
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

    /// <summary>
    /// Applies the guard's forms (in place) and returns the model: <see cref="RegionForm.Float"/> regions read their float
    /// activations; <see cref="RegionForm.FloatWeights"/> regions too, and read each constant DequantizeLinear input as a
    /// float initializer holding the same values ((q − zero point) · scale, as ONNX Runtime computes it).
    /// </summary>
    public static OnnxModel Apply(OnnxModel model, IReadOnlyDictionary<string, RegionForm> forms)
    {
        var floats = forms.Where(f => f.Value != RegionForm.Int8).Select(f => f.Key).ToHashSet(StringComparer.Ordinal);
        Float(model, floats);
        var graph = model.Graph;
        foreach (var node in graph.Nodes.Where(n => forms.GetValueOrDefault(OnnxGraph.Describe(n)) == RegionForm.FloatWeights).ToList())
        {
            foreach (var (index, dq) in ConstantInputs(graph, node).ToList())
            {
                using var scope = torch.NewDisposeScope();
                var q = model.ToTorch(graph.GetInitializer(dq.Input[0])!);
                var scale = model.ToTorch(graph.GetInitializer(dq.Input[1])!);
                var zero = dq.Input.Count > 2 && dq.Input[2].Length > 0 ? model.ToTorch(graph.GetInitializer(dq.Input[2])!) : null;
                // A 1-D scale is per axis (default 1); zero point and scale broadcast along it.
                var shape = Enumerable.Repeat(1L, (int)q.dim()).ToArray();
                if (scale.dim() == 1 && q.dim() > 0)
                {
                    shape[((int)(dq.Attribute.FirstOrDefault(a => a.Name == "axis")?.I ?? 1) + (int)q.dim()) % (int)q.dim()] = scale.shape[0];
                }

                var codes = q.to_type(torch.ScalarType.Float32);
                var values = (zero is null ? codes : codes - zero.to_type(torch.ScalarType.Float32).reshape(shape)) * scale.reshape(shape);
                node.Input[index] = graph.AddInitializer(values.ToOnnx(graph.UniqueName(dq.Output[0] + "_float"))).Name;
            }
        }

        graph.Refresh();
        foreach (var dq in graph.Nodes.Where(n => n.OpType == "DequantizeLinear" && graph.GetInitializer(n.Input[0]) is not null).ToList())
        {
            if (graph.GetConsumers(dq.Output[0]).Count == 0 && !graph.IsGraphOutput(dq.Output[0]))
            {
                graph.Remove(dq);
                foreach (var constant in dq.Input.Where(c => c.Length > 0).Distinct())
                {
                    graph.RemoveInitializerIfUnused(constant);
                }
            }
        }

        return model;
    }

    /// <summary>
    /// The kind the guard times a region with when a model has too many to time alone: its op, and for a Conv whether it
    /// is depthwise and its kernel ('Conv depthwise 3×3', 'Conv 1×1', 'Conv 5×5', 'Conv grouped 3×3'), which is what
    /// decides whether ONNX Runtime's integer kernel beats its float one.
    /// </summary>
    public static string Kind(OnnxGraph graph, NodeProto node)
    {
        if (node.OpType is not ("Conv" or "ConvTranspose") || node.Input.Count < 2)
        {
            return node.OpType;
        }

        var weight = graph.GetProducer(node.Input[1]) is { OpType: "DequantizeLinear" } dq ? dq.Input[0] : node.Input[1];
        if (graph.GetInitializer(weight) is not { Dims.Count: >= 3 } w)
        {
            return node.OpType;
        }

        var group = node.Attribute.FirstOrDefault(a => a.Name == "group")?.I ?? 1;
        var kernel = string.Join("×", w.Dims.Skip(2));
        var channels = node.OpType == "Conv" ? w.Dims[0] : w.Dims[1] * group;
        var shape = group == 1 ? "" : group == channels ? " depthwise" : " grouped";
        return $"{node.OpType}{shape} {kernel}";
    }

    /// <summary>The inputs of <paramref name="node"/> that a DequantizeLinear of constant data (weights, bias) gives.</summary>
    public static IEnumerable<(int Index, NodeProto Dq)> ConstantInputs(OnnxGraph graph, NodeProto node)
    {
        for (var i = 0; i < node.Input.Count; i++)
        {
            if (graph.GetProducer(node.Input[i]) is { OpType: "DequantizeLinear" } dq && graph.GetInitializer(dq.Input[0]) is not null
                && dq.Input.Skip(1).All(c => c.Length == 0 || graph.GetInitializer(c) is not null))
            {
                yield return (i, dq);
            }
        }
    }

    private static bool IsQdq(NodeProto node) => node.OpType is "QuantizeLinear" or "DequantizeLinear";

    /// <summary>The Q→DQ pair a value comes out of, when it is a quantized activation (not a constant's DQ).</summary>
    private static (NodeProto Q, NodeProto Dq)? QuantizedActivation(OnnxGraph graph, string value) =>
        graph.GetProducer(value) is { OpType: "DequantizeLinear" } dq && graph.GetProducer(dq.Input[0]) is { OpType: "QuantizeLinear" } q ? (q, dq) : null;
}
