using System.Runtime.CompilerServices;
using Compress.Core.Diagnostics;
using Compress.Core.Onnx;
using Compress.Core.Passes;
using Compress.Core.Passes.Factorization;
using Compress.Core.Passes.Pruning;
using Compress.Core.Plans;
using Compress.Spec;
using Compress.Spec.Methods;

namespace Compress.Core.Allocation;

/// <summary>
/// <c>allocate</c> (algorithms.md §5, §6, §12): for the prune and quantize steps after it, each layer's sparsity and
/// bits from the error database under the step's size budget, solved by the step's method (<c>dp</c> exactly,
/// <c>anneal</c> as a QUBO), written to the per-layer plan those steps read. It changes no weight itself. A choice's
/// cost is the bytes the writer stores for the layer (<see cref="StoredBytes"/>); the budget for the layers is the
/// target less what the rest of the model takes in the source. The database and sensitivities are measured once per
/// run and reused by every compress-and-evaluate round (<see cref="AllocationSearch"/>).
/// </summary>
[ImplementsMethod(DpMethod.Name, AnnealMethod.Name)]
public sealed class AllocatePass(AllocateStep step) : ICompressionPass
{
    private static readonly ConditionalWeakTable<AllocateStep, Allocator> Measured = new();
    private static readonly ConditionalWeakTable<AllocateStep, ChannelAllocation> MeasuredChannels = new();
    private static readonly ConditionalWeakTable<AllocateStep, RankAllocation> MeasuredRanks = new();

    /// <summary>The timer of <c>"latency"</c> budgets: batch 1, one thread, median of up to this many runs (within half a second).</summary>
    private const int TimedRuns = 301;

    public string Name => $"allocate/{step.Method}";

    /// <summary>How the round's proxy weighs the layers, in words (no sensitivity measured: the relative errors alone).</summary>
    private static string How(string solver) => solver == DpMethod.Name ? "dynamic programming" : "simulated annealing of the QUBO";

    private string Proxy => step.MeasuresSensitivity ? new ProxyWeighting(step.Gamma).ToString() : "relative error";

    public void Apply(CompressionContext context)
    {
        var covered = context.Spec.Covered(step);
        var prune = covered.OfType<PruneStep>().FirstOrDefault();
        var quantize = covered.OfType<QuantizeStep>().FirstOrDefault();
        var pack = covered.OfType<PackStep>().FirstOrDefault();
        if (covered.FirstOrDefault() is FactorizeStep factorize)
        {
            AllocateRanks(context, factorize);
            return;
        }

        if (prune is { Channel: true })
        {
            AllocateChannels(context, prune);
            return;
        }

        var uses = WeightSelection.Select(context.Model.Graph, (SpecStep?)prune ?? (SpecStep?)quantize ?? pack!)
            .Where(u => u.Node.OpType is "Conv" or "Gemm" or "MatMul").GroupBy(u => u.Weight.Name).Select(g => g.First()).ToList();
        if (uses.Count == 0)
        {
            context.Notes.Add($"{Name}: no Conv/Gemm/MatMul weights among the steps' layers; nothing allocated");
            return;
        }

        if (prune is { N: > 0 })
        {
            uses.ForEach(u => PruningPass.CheckGroups(context.Spec, prune, u, Passes.SecondOrder.LayerMatrix.Columns(u)));
        }

        SpecStep? bitsStep = (SpecStep?)quantize ?? pack;
        var quantized = bitsStep is null ? new HashSet<string>()
            : WeightSelection.Select(context.Model.Graph, bitsStep).Select(u => u.Weight.Name).ToHashSet(StringComparer.Ordinal);
        var offered = bitsStep is null ? [32] : step.Bits.Count > 0 ? step.Bits.ToArray()
            : quantize is not null ? SpecReader.AllocationBits(quantize) : SpecReader.PackAllocationBits;
        var weightOnly = quantize?.Scheme == QuantizeSchemes.WeightOnly;
        var allocator = Measured.GetValue(step, _ =>
        {
            var pruner = prune is null ? null : ((PruningPass)PassRegistry.Create(prune)).DatabasePruner;
            // An N:M step's choices per layer are dense or the pattern; otherwise the sparsity levels.
            var levels = prune is null ? [0.0] : prune.N > 0 ? [0.0, 1 - prune.N / (double)prune.M] : ErrorDatabase.SparsityLevels(prune.MaxLayerSparsity);
            return Allocator.Measure(context, uses, levels, u => quantized.Contains(u.Weight.Name) ? offered : [32], pruner, step.MeasuresSensitivity,
                pack is null ? null : ErrorDatabase.Shared);
        });

        var target = step.Bytes ?? (long)Math.Floor((step.Size ?? step.SearchedSize
            ?? throw new InvalidOperationException("an allocation without a budget runs inside the size search")) * context.OriginalBytes);
        // What the layers do not take: the rest of the source, and what the earlier rounds measured beyond the estimate.
        var rest = Math.Max(0, context.OriginalBytes - allocator.Database.Sum(l => l.Parameters * 4)) + step.MeasuredOverhead;
        var perRow = StoredBytes.PerRow(quantize?.Scheme);
        var problem = allocator.Problem(new ProxyWeighting(step.Gamma),
            (l, e) => e.Bytes ?? StoredBytes.Of(l.Parameters, l.Rows, e.Sparsity, e.Bits, weightOnly && e.Bits <= 8, perRow), target - rest);
        if (!problem.IsFeasible)
        {
            throw CompressException.Error(DiagnosticCodes.BudgetUnreachable,
                $"the size budget of {target:N0} bytes cannot be met: the {uses.Count} allocated layers need at least {problem.MinimumCost:N0} bytes at their smallest choices " +
                $"and the rest of the model takes {rest:N0}; raise 'size'/'bytes' or allow more sparsity (maxLayerSparsity) or fewer bits",
                context.Spec.File, step.Line, step.Column);
        }

        var solution = Allocator.Solve(problem, MethodCatalog.Of(step).Name);
        step.EstimatedBytes = solution.Cost + rest;
        var words = $"{target:N0} bytes ({target / (double)context.OriginalBytes:0.###} of the source), {problem.Budget:N0} of them for the {uses.Count} layers; proxy: {Proxy}";
        context.Allocation = allocator.Figures(problem, solution, MethodCatalog.Of(step).Name, words, []);
        for (var i = 0; i < uses.Count; i++)
        {
            var chosen = problem.Layers[i][solution.Choice[i]];
            var weight = uses[i].Weight.Name;
            if (prune is not null)
            {
                context.Plan.Allocate(prune, new LayerPlan(weight, PlanSource.Allocation) { Sparsity = chosen.Sparsity });
            }

            if (bitsStep is not null && quantized.Contains(weight))
            {
                context.Plan.Allocate(bitsStep, new LayerPlan(weight, PlanSource.Allocation) { Bits = chosen.Bits });
            }
        }

        context.Progress($"{Name}: {uses.Count} layers, estimated {solution.Cost + rest:N0} bytes (budget {target:N0}), proxy objective {solution.Objective:0.####}");
        context.Notes.Add($"{Name}: per-layer {(prune is null ? "" : "sparsity")}{(prune is not null && bitsStep is not null ? " and " : "")}{(bitsStep is null ? "" : pack is null ? "bits" : "shared-value bits")} " +
            $"chosen by {How(MethodCatalog.Of(step).Name)} for {words}");
    }

    /// <summary>
    /// A <c>"pattern": "channel"</c> prune step: each dependency group's kept channels under the <c>macs</c> or
    /// <c>latency</c> budget (the size search's fraction, as multiply-adds, without one), written as the group's sparsity
    /// 1 − k/C on its first producer's weight, which the channel pruner reads (algorithms.md §18). The errors are
    /// measured at the model's output, so no layer sensitivity weighs them (one round). A quantize or pack step after
    /// it keeps its own bits.
    /// </summary>
    private void AllocateChannels(CompressionContext context, PruneStep prune)
    {
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var allocation = MeasuredChannels.GetValue(step, _ => ChannelAllocation.Measure(context, prune, context.Spec.File, step.Line, step.Column));
        if (allocation.Groups.Count == 0)
        {
            context.Notes.Add($"{Name}: no channel group the prune step selects can be pruned; nothing allocated");
            return;
        }

        var kind = step.Latency is null ? ChannelCost.Macs : ChannelCost.Latency;
        var fraction = step.Macs ?? step.Latency ?? step.SearchedSize
            ?? throw new InvalidOperationException("an allocation without a budget runs inside the size search");
        var data = context.Calibration;
        Func<OnnxModel, double> measure = kind == ChannelCost.Macs
            ? m => Evaluation.FlopCount.MultiplyAdds(m, data)
            : m => Evaluation.LatencyComparison.Batch1Ms(m, data, TimeSpan.FromSeconds(0.5), TimedRuns);
        var solver = MethodCatalog.Of(step).Name;
        var solution = allocation.Solve(kind, fraction, solver, measure, context.Progress, context.Spec.File, step.Line, step.Column);
        for (var i = 0; i < allocation.Groups.Count; i++)
        {
            var group = allocation.Groups[i];
            context.Plan.Allocate(prune, new LayerPlan(group.Weight, PlanSource.Allocation) { Sparsity = 1 - solution.Kept[i] / (double)group.Channels });
        }

        var words = string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"{(kind == ChannelCost.Macs ? "multiply-adds" : "batch-1 latency")} ≤ {fraction:0.####} of the source's {ChannelAllocation.Unit(kind, solution.SourceCost)}; error: {allocation.Measured}");
        context.Allocation = allocation.Figures(solution, solver, words);
        var how = How(solver);
        var measured = kind == ChannelCost.Macs ? "counted" : "timed";
        context.Notes.Add(string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"{Name}: channels per group chosen by {how} for {words}: {allocation.Describe(solution.Kept)} → {ChannelAllocation.Unit(kind, solution.Cost)} ({solution.Cost / solution.SourceCost:P1} of the source), summed output error {solution.Objective:0.#####}, {solution.Iterations} linearised passes, {allocation.Table.Count} costs {measured}, {watch.Elapsed.TotalSeconds:0.#} s"));
    }

    /// <summary>
    /// A <c>factorize</c> step right after the allocation: each layer's rank (or dense) under the size budget
    /// (<c>size</c>/<c>bytes</c>, or the size search's fraction) or the <c>macs</c> budget, written to the plan the
    /// factorizer reads (algorithms.md §18). The steps after the factorize step keep their own values.
    /// </summary>
    private void AllocateRanks(CompressionContext context, FactorizeStep factorize)
    {
        var allocation = MeasuredRanks.GetValue(step, _ => RankAllocation.Measure(context, factorize, step.MeasuresSensitivity));
        var left = allocation.Left;
        if (allocation.Layers.Count == 0)
        {
            context.Notes.Add($"{Name}: no layer the factorize step selects can be split{(left.Count > 0 ? $" ({string.Join("; ", left)})" : "")}; nothing allocated");
            return;
        }

        var kind = step.Macs is null ? RankCost.Bytes : RankCost.Macs;
        var source = kind == RankCost.Bytes ? context.OriginalBytes : allocation.SourceMacs;
        var target = step.Bytes ?? (long)Math.Floor((step.Macs ?? step.Size ?? step.SearchedSize
            ?? throw new InvalidOperationException("an allocation without a budget runs inside the size search")) * source);
        var rest = Math.Max(0, source - allocation.Layers.Sum(l => RankAllocation.Dense(l, kind))) + (kind == RankCost.Bytes ? step.MeasuredOverhead : 0);
        var problem = allocation.Problem(kind, new ProxyWeighting(step.Gamma), target - rest);
        var unit = kind == RankCost.Bytes ? "bytes" : "multiply-adds per sample";
        if (!problem.IsFeasible)
        {
            throw CompressException.Error(DiagnosticCodes.BudgetUnreachable,
                $"the budget of {target:N0} {unit} cannot be met: the {allocation.Layers.Count} layers the factorize step can split need at least {problem.MinimumCost:N0} at rank {LowRankFactorizer.Multiple} " +
                $"and the rest of the model takes {rest:N0}; raise the budget or select more layers",
                context.Spec.File, step.Line, step.Column);
        }

        var solver = MethodCatalog.Of(step).Name;
        var solution = Allocator.Solve(problem, solver);
        if (kind == RankCost.Bytes)
        {
            step.EstimatedBytes = solution.Cost + rest;
        }

        var ranks = allocation.Ranks(solution);
        for (var i = 0; i < ranks.Length; i++)
        {
            context.Plan.Allocate(factorize, new LayerPlan(allocation.Layers[i].Use.Weight.Name, PlanSource.Allocation) { Rank = ranks[i] });
        }

        var words = $"{target:N0} {unit} ({target / (double)source:0.###} of the source), {problem.Budget:N0} of them for the {allocation.Layers.Count} layers; proxy: {Proxy}";
        context.Allocation = allocation.Figures(problem, solution, solver, words);
        context.Progress($"{Name}: ranks of {allocation.Layers.Count} layers, {solution.Cost + rest:N0} {unit} (budget {target:N0}), proxy objective {solution.Objective:0.####}");
        context.Notes.Add($"{Name}: ranks chosen by {How(solver)} for {words}: {allocation.Describe(ranks)}" +
            (left.Count > 0 ? $"; not offered: {string.Join("; ", left)}" : ""));
    }
}
