using System.Diagnostics;
using System.Globalization;
using Compress.Core.Diagnostics;
using Compress.Core.Evaluation;
using Compress.Core.Onnx;
using Compress.Core.Passes;
using Compress.Core.Passes.Pruning.Channels;
using Compress.Core.Reports;
using Compress.Core.Torch;
using Compress.Spec;
using static TorchSharp.torch;

namespace Compress.Core.Allocation;

/// <summary>What a channel allocation's budget counts: multiply-adds per sample, or measured batch-1 milliseconds.</summary>
public enum ChannelCost
{
    /// <summary>Multiply-adds per sample of the Conv/ConvTranspose/Gemm/MatMul nodes (<see cref="FlopCount"/>).</summary>
    Macs,

    /// <summary>The whole model's batch-1 time in ONNX Runtime on one thread, measured per choice.</summary>
    Latency,
}

/// <summary>One dependency group's options: kept channel counts (descending, the dense count first) and each one's error.</summary>
/// <param name="Key">The group's identity across re-analyses (<see cref="ChannelGroup.Key"/>).</param>
/// <param name="Name">Its first producer's node, for notes and the report.</param>
/// <param name="Weight">Its first producer's weight: the plan's layer the pruner reads.</param>
/// <param name="Errors">[choice]: the model's held-out output error (<see cref="OutputError.HeldOut"/>) with this group alone cut to the choice and its consumers refitted.</param>
public sealed record GroupChoices(string Key, string Name, string Weight, long Channels, long Parameters, IReadOnlyList<long> Kept, double[] Errors);

/// <summary>An allocation's answer: the kept channels per group, its proxy objective, its exact cost and the source's.</summary>
public sealed record ChannelSolution(IReadOnlyList<long> Kept, double Objective, double Cost, double SourceCost, double Budget, int Iterations, TimeSpan Time);

/// <summary>
/// Channel counts per dependency group under a compute budget (algorithms.md §18). The error of keeping k of a group's
/// C channels is measured at the model's output: the group alone cut to k as the pruner cuts it (greedy OBS, consumers
/// refitted by least squares, §14), the model run on calibration data and compared with the dense model
/// (<see cref="OutputError"/>: KL of the class scores, else relative squared error), held out — each cut made twice, its
/// consumers refitted on the even calibration samples and on the odd, each sample judged by the cut that did not see it
/// (<see cref="OutputError.HeldOut"/>) — and an assignment's error is the sum
/// over its groups. A consumer's own relative error after its refit, the earlier proxy, ranked the Fashion CNN's groups
/// the wrong way round (conv2 cheap, conv1 dear), because it does not see what the layers after a consumer make of its
/// error. The choices are the counts the pruner keeps (multiples of 8 where it rounds). The cost of an assignment is exact — the model with every group cut to its count, its multiply-adds
/// counted or its batch-1 time measured — but not separable: a Conv between two groups costs in proportion to the
/// product of their counts. So the solver (<see cref="DynamicProgram"/> or <see cref="QuboAnnealer"/>) sees each group's
/// cost linearised at a reference assignment (the change in cost when that group alone moves) — the dense model and the
/// uniform cuts just above and below the budget — the reference moves to each answer and the next budget is corrected
/// by what the answer's exact cost missed it by (either way), until an answer comes a third time or
/// <see cref="PassesPerStart"/> passes; then the best answer within the budget, the best beyond it, the two uniform
/// cuts and the fewest channels everywhere are each cut until within and raised while within, one choice at a time on
/// exact costs, and the lowest error wins. Every cost is measured once per assignment and kept (the latency table), so
/// the choice is a deterministic function of that table; the cost is whatever <see cref="Solve"/> is given to measure (tests
/// inject a timer).
/// </summary>
public sealed class ChannelAllocation
{
    /// <summary>Linearise-and-solve passes at most from each reference (the dense model, two uniform cuts).</summary>
    public const int PassesPerStart = 6;

    /// <summary>The uniform cuts tried as references keep e/8 of every group, e = 1…7.</summary>
    private const int Eighths = 8;

    private readonly OnnxModel _source;
    private readonly Dictionary<string, double> _costs = new(StringComparer.Ordinal);

    private ChannelAllocation(OnnxModel source, List<GroupChoices> groups, string measured)
    {
        (_source, Groups, Measured) = (source, groups, measured);
    }

    /// <summary>What the errors are, in words (for notes and the report).</summary>
    public string Measured { get; }

    /// <summary>The groups the prune step selects and can cut, in graph order.</summary>
    public IReadOnlyList<GroupChoices> Groups { get; }

    /// <summary>Every cost measured so far, by assignment (the latency table when timing).</summary>
    public IReadOnlyDictionary<string, double> Table => _costs;

    /// <summary>Builds each selected group's choices and their output errors on the model as it is now (dense).</summary>
    public static ChannelAllocation Measure(CompressionContext context, PruneStep prune, string file, int line, int column)
    {
        TorchRuntime.EnsureLoaded();
        if (context.Model.ExternalData.Count > 0)
        {
            throw CompressException.Error(DiagnosticCodes.ChannelAllocationExternalData,
                "a channel allocation counts the cost of each choice on a copy of the model cut to it, which needs the weights inside the .onnx file; " +
                "this model keeps them in external data: save it with the weights inside, or give the prune step a 'sparsity' instead of the allocation",
                file, line, column);
        }

        var graph = context.Model.Graph;
        var groups = new List<GroupChoices>();
        var found = ChannelPruner.Prunable(graph, prune, []);
        using var output = OutputError.Of(context, prune.Damping);
        for (var i = 0; i < found.Count; i++)
        {
            var group = found[i];
            var kept = Counts(group, prune.MaxLayerSparsity, ChannelWidths.For(context.Spec, prune, group));
            context.Progress($"allocation: output errors, {group} ({i + 1}/{found.Count}), {kept.Count} choices");
            var errors = new double[kept.Count]; // the dense choice: 0
            ChannelPruner.CutAlone(context, group, prune.Damping, kept, (c, cut) => errors[c] = output.HeldOut(cut));
            var parameters = group.Producers.Sum(p => Onnx.OnnxElementTypes.ElementCount(graph.GetInitializer(p.Input[1])!.Dims));
            groups.Add(new GroupChoices(group.Key, OnnxGraph.Describe(group.Seed), ChannelPruner.Weight(group), group.Channels, parameters, kept, errors));
        }

        return new ChannelAllocation(new OnnxModel(context.Model.Proto.Clone()), groups, output.Describe());
    }

    /// <summary>The kept counts the pruner can make of a group (its rounding to <paramref name="widths"/> and its cap), descending.</summary>
    internal static IReadOnlyList<long> Counts(ChannelGroup group, double maxLayerSparsity, ChannelWidths widths)
    {
        var counts = new SortedSet<long>(Comparer<long>.Create((a, b) => b.CompareTo(a)));
        for (var j = 0; j <= 256; j++)
        {
            var kept = group.Channels - ChannelPruner.Removable(group, j / 256.0, maxLayerSparsity, widths);
            // Only counts the pruner reproduces from the plan's sparsity 1 − k/C.
            if (group.Channels - ChannelPruner.Removable(group, 1 - kept / (double)group.Channels, maxLayerSparsity, widths) == kept)
            {
                counts.Add(kept);
            }
        }

        return counts.ToList();
    }

    /// <summary>
    /// Chooses each group's count so that the exact cost stays within <paramref name="fraction"/> of the source's,
    /// minimising the summed proxy error (see the class summary); <paramref name="measure"/> gives the cost of a cut model.
    /// Throws CMP0050 when even every group at its fewest channels costs more.
    /// </summary>
    public ChannelSolution Solve(ChannelCost kind, double fraction, string solver, Func<OnnxModel, double> measure, Action<string> progress,
        string? file = null, int line = 0, int column = 0)
    {
        var watch = Stopwatch.StartNew();
        var dense = Groups.Select(g => g.Channels).ToArray();
        var source = Cost(dense, measure);
        var budget = fraction * source;
        // Integer units for the solvers: multiply-adds as they are, milliseconds in nanoseconds.
        var scale = kind == ChannelCost.Macs ? 1.0 : 1e6;
        var errors = Groups.Select(g => g.Errors).ToArray();
        var fewest = Groups.Select(g => g.Kept[^1]).ToArray();
        var least = Cost(fewest, measure);
        if (least > budget)
        {
            throw CompressException.Error(DiagnosticCodes.BudgetUnreachable, string.Create(CultureInfo.InvariantCulture,
                $"the {(kind == ChannelCost.Macs ? "multiply-add" : "latency")} budget of {fraction:0.####} of the source ({Unit(kind, budget)}) cannot be met: with every one of the {Groups.Count} channel groups at its fewest channels the model still takes {Unit(kind, least)} ({least / source:P1}); raise '{(kind == ChannelCost.Macs ? "macs" : "latency")}' or allow more channels to go (maxLayerSparsity)"), file, line, column);
        }

        (long[] Kept, double Objective, double Cost)? best = null, over = null;
        var iterations = 0;
        // Linearised from the dense model and from the two uniform cuts nearest the budget (above and below): a product
        // of two groups' counts is far from linear over the whole range, but close to it near the answer.
        var uniform = Enumerable.Range(1, Eighths - 1).Select(e => Groups.Select(g => g.Kept.MinBy(k => Math.Abs(k - g.Channels * e / (double)Eighths))).ToArray())
            .Select(k => (Kept: k, Cost: Cost(k, measure))).ToList();
        var references = new List<long[]> { dense };
        references.AddRange(uniform.Where(u => u.Cost > budget).OrderBy(u => u.Cost).Take(1).Select(u => u.Kept));
        references.AddRange(uniform.Where(u => u.Cost <= budget).OrderByDescending(u => u.Cost).Take(1).Select(u => u.Kept));
        foreach (var start in references)
        {
            var reference = start;
            var slack = 0.0;
            var seen = new Dictionary<string, int>(StringComparer.Ordinal);
            for (var pass = 0; pass < PassesPerStart; pass++)
            {
                iterations++;
                var at = Cost(reference, measure);
                var deltas = Groups.Select((g, i) => g.Kept.Select(k => Cost(With(reference, i, k), measure) - at).ToArray()).ToArray();
                var floor = deltas.Select(d => d.Min()).ToArray();
                var layers = Groups.Select((g, i) => (IReadOnlyList<LayerChoice>)g.Kept.Select((k, c) =>
                    new LayerChoice(1 - k / (double)g.Channels, 32, (long)Math.Round((deltas[i][c] - floor[i]) * scale), errors[i][c])).ToList()).ToList();
                var room = (long)Math.Floor((budget - slack - at - floor.Sum()) * scale);
                var problem = new AllocationProblem(layers, room);
                if (!problem.IsFeasible)
                {
                    break;
                }

                var solution = Allocator.Solve(problem, solver);
                var answer = solution.Choice.Select((c, i) => Groups[i].Kept[c]).ToArray();
                var exact = Cost(answer, measure);
                var objective = solution.Choice.Select((c, i) => errors[i][c]).Sum();
                progress(string.Create(CultureInfo.InvariantCulture,
                    $"allocation: pass {iterations}, {Describe(answer)}: {Unit(kind, exact)} ({exact / source:P1} of the source; budget {budget / source:P1}), objective {objective:0.#####}"));
                if (exact <= budget && (best is not { } b || objective < b.Objective))
                {
                    best = (answer, objective, exact);
                }
                else if (exact > budget && (over is not { } o || objective < o.Objective))
                {
                    over = (answer, objective, exact);
                }

                // The next pass's budget is corrected by what this answer's exact cost missed it by, either way.
                slack += exact - budget;
                reference = answer;
                seen[Key(answer)] = seen.GetValueOrDefault(Key(answer)) + 1;
                if (seen[Key(answer)] >= 3)
                {
                    break; // the passes circle
                }
            }
        }

        // Each pass's answer is exact in cost but only as good as its linearisation: the best within the budget and the
        // best beyond it are moved one choice at a time on exact costs — cut where it costs least error per unit saved
        // until within the budget, then raised where it gains most error per unit spent while it stays within.
        var starts = new List<long[]>();
        if (best is { } feasible)
        {
            starts.Add(feasible.Kept);
        }

        if (over is { } beyond)
        {
            starts.Add(beyond.Kept);
        }

        starts.AddRange(references.Skip(1));
        starts.Add(fewest);
        foreach (var start in starts)
        {
            var index = start.Select((k, i) => Groups[i].Kept.ToList().IndexOf(k)).ToArray();
            Repair(index, budget, errors, measure);
            Fill(index, budget, errors, measure);
            var kept = index.Select((c, i) => Groups[i].Kept[c]).ToArray();
            var objective = index.Select((c, i) => errors[i][c]).Sum();
            if (best is not { } b || objective < b.Objective - 1e-15)
            {
                best = (kept, objective, Cost(kept, measure));
            }
        }

        var chosen = best!.Value;
        return new ChannelSolution(chosen.Kept, chosen.Objective, chosen.Cost, source, budget, iterations, watch.Elapsed);
    }

    /// <summary>Cuts one group one choice at a time, the least error per unit of exact cost saved first, until within the budget.</summary>
    private void Repair(int[] index, double budget, double[][] errors, Func<OnnxModel, double> measure)
    {
        var cost = Cost(Kept(index), measure);
        while (cost > budget)
        {
            var (move, rate, after) = (-1, double.PositiveInfinity, 0.0);
            for (var g = 0; g < index.Length; g++)
            {
                if (index[g] + 1 < Groups[g].Kept.Count)
                {
                    var trial = Step(index, g, +1);
                    var saved = cost - Cost(Kept(trial), measure);
                    var r = (errors[g][index[g] + 1] - errors[g][index[g]]) / Math.Max(saved, 1e-30);
                    if (saved > 0 && r < rate)
                    {
                        (move, rate, after) = (g, r, cost - saved);
                    }
                }
            }

            if (move < 0)
            {
                for (var g = 0; g < index.Length; g++)
                {
                    index[g] = Groups[g].Kept.Count - 1; // nothing single saves: the fewest everywhere (within the budget, checked first)
                }

                return;
            }

            index[move]++;
            cost = after;
        }
    }

    /// <summary>Raises one group one choice at a time, the most error removed per unit of exact cost spent first, while within the budget.</summary>
    private void Fill(int[] index, double budget, double[][] errors, Func<OnnxModel, double> measure)
    {
        var cost = Cost(Kept(index), measure);
        while (true)
        {
            var (move, rate, after) = (-1, 0.0, 0.0);
            for (var g = 0; g < index.Length; g++)
            {
                var gain = index[g] > 0 ? errors[g][index[g]] - errors[g][index[g] - 1] : 0;
                if (gain <= 0)
                {
                    continue;
                }

                var spent = Cost(Kept(Step(index, g, -1)), measure);
                var r = gain / Math.Max(spent - cost, 1e-30);
                if (spent <= budget && r > rate)
                {
                    (move, rate, after) = (g, r, spent);
                }
            }

            if (move < 0)
            {
                return;
            }

            index[move]--;
            cost = after;
        }
    }

    private long[] Kept(int[] index) => index.Select((c, i) => Groups[i].Kept[c]).ToArray();

    private static int[] Step(int[] index, int group, int by)
    {
        var copy = (int[])index.Clone();
        copy[group] += by;
        return copy;
    }

    /// <summary>The report's record of a solution: one row per group, its options' errors and the float32 bytes of its producers' kept weights.</summary>
    public AllocationFigures Figures(ChannelSolution solution, string solver, string words) =>
        new(solver, words, solution.Objective,
            Groups.Select((g, i) =>
                new AllocatedLayer(g.Weight, g.Name, g.Parameters, 1, 1 - solution.Kept[i] / (double)g.Channels, 32, Bytes(g, solution.Kept[i]),
                    g.Kept.Select((kept, c) => new AllocationOption(1 - kept / (double)g.Channels, 32, Bytes(g, kept), g.Errors[c])).ToList())).ToList(),
            [], (long)Math.Round(solution.Budget));

    /// <summary>"conv1 16→8, conv2 32→16, …": the groups' kept channels.</summary>
    public string Describe(IReadOnlyList<long> kept) =>
        string.Join(", ", Groups.Select((g, i) => kept[i] == g.Channels ? $"{g.Name} {g.Channels}" : $"{g.Name} {g.Channels}→{kept[i]}"));

    public static string Unit(ChannelCost kind, double cost) =>
        kind == ChannelCost.Macs ? string.Create(CultureInfo.InvariantCulture, $"{cost:N0} multiply-adds") : string.Create(CultureInfo.InvariantCulture, $"{cost:0.####} ms");

    /// <summary>The source model cut to <paramref name="kept"/> channels per group (the first ones: the cost does not depend on which).</summary>
    public OnnxModel Cut(IReadOnlyList<long> kept)
    {
        var model = new OnnxModel(_source.Proto.Clone());
        for (var i = 0; i < Groups.Count; i++)
        {
            if (kept[i] < Groups[i].Channels)
            {
                using var scope = NewDisposeScope();
                var group = ChannelGroups.Find(model.Graph).First(g => g.Key == Groups[i].Key);
                ChannelSurgery.Remove(model, group, Enumerable.Range(0, (int)kept[i]).Select(c => (long)c).ToArray());
            }
        }

        return model;
    }

    private double Cost(long[] kept, Func<OnnxModel, double> measure)
    {
        var key = Key(kept);
        if (!_costs.TryGetValue(key, out var cost))
        {
            cost = measure(Cut(kept));
            _costs[key] = cost;
        }

        return cost;
    }

    private static long[] With(long[] kept, int group, long count)
    {
        var copy = (long[])kept.Clone();
        copy[group] = count;
        return copy;
    }

    private static string Key(long[] kept) => string.Join(",", kept);

    private static long Bytes(GroupChoices group, long kept) => (long)Math.Round(4.0 * group.Parameters * kept / group.Channels);
}
