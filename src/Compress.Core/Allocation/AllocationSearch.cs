using System.Globalization;
using Compress.Core.Diagnostics;
using Compress.Core.Evaluation;
using Compress.Core.Fidelity;
using Compress.Core.Formats;
using Compress.Core.Reports;
using Compress.Spec;

namespace Compress.Core.Allocation;

/// <summary>
/// The compress-and-evaluate rounds of an <c>allocate</c> step (Condensa, algorithms.md §10), each a full compression
/// of a fresh working copy (<see cref="IReopenableFormat"/>) and a comparison on the spec's evaluation data (else its
/// calibration data); the database is measured once and shared by every round (<see cref="AllocatePass"/>).
/// <list type="bullet">
/// <item>With a size budget: the rounds correct the proxy — each weighs the layers' errors by a different power γ of
/// their loss sensitivity (1, 0, ½, 2, …), and the best measured fidelity wins (accuracy with labels, else top-1
/// agreement, else mean cosine; SQNR breaks ties).</item>
/// <item>Without one: the smallest size (a fraction of the source, bisected in log scale) whose compression meets
/// every constraint of the spec.</item>
/// </list>
/// At most <see cref="MaxRounds"/> rounds; every round not chosen is disposed when superseded.
/// </summary>
internal static class AllocationSearch
{
    public const int MaxRounds = 10;

    /// <summary>
    /// Default rounds: three proxies with a budget, eight bisections without; one for channel counts under a compute
    /// budget, whose errors are measured at the output and weighed by no sensitivity (every round would choose alike).
    /// </summary>
    public static int Rounds(CompressionSpec spec, AllocateStep step) =>
        step.Rounds ?? (!step.HasBudget ? 8 : step.MeasuresSensitivity && !ChannelCounts(spec, step) ? 3 : 1);

    /// <summary>Whether the step chooses channel counts for a <c>"pattern": "channel"</c> prune step.</summary>
    public static bool ChannelCounts(CompressionSpec spec, AllocateStep step) => spec.Covered(step).OfType<PruneStep>().Any(p => p.Channel);

    private static readonly double[] Gammas = [1, 0, 0.5, 2, 0.25, 1.5, 0.75, 3, 0.1, 4];

    /// <summary>Whether the spec's allocation makes more than one round (else the pipeline compresses once).</summary>
    public static bool Searches(CompressionSpec spec, DataSource? data, IModelFormat opened) =>
        data is not null && opened is IReopenableFormat && spec.Steps.OfType<AllocateStep>().FirstOrDefault() is { } step
        && (!step.HasBudget || Rounds(spec, step) > 1);

    public static Compressed Run(CompressionSpec spec, DataSource data, IReopenableFormat opened,
        Func<IModelFormat, List<CompressDiagnostic>> compress, Action<string> progress, string outputPath)
    {
        var step = spec.Steps.OfType<AllocateStep>().First();
        return !step.HasBudget
            ? SearchSize(step, spec, data, opened, compress, progress, outputPath)
            : CorrectProxy(step, spec, data, opened, compress, progress, outputPath);
    }

    private static Compressed CorrectProxy(AllocateStep step, CompressionSpec spec, DataSource data, IReopenableFormat opened,
        Func<IModelFormat, List<CompressDiagnostic>> compress, Action<string> progress, string outputPath)
    {
        var rounds = new List<AllocationRound>();
        (IReopenableFormat Model, List<CompressDiagnostic> Warnings, ComparisonMetrics Metrics, int Round, double Gamma)? best = null;
        var count = Math.Min(Rounds(spec, step), MaxRounds);
        // A compute budget ('macs', 'latency') is met by the allocation's own exact count: every round fits.
        var compute = step.Macs is not null || step.Latency is not null;
        var target = compute ? long.MaxValue : step.Bytes ?? (long)Math.Floor(step.Size!.Value * opened.SourceBytes);
        for (var round = 1; round <= count; round++)
        {
            step.Gamma = Gammas[round - 1];
            var label = new ProxyWeighting(step.Gamma).ToString();
            progress($"allocation round {round}/{count}: proxy {label}");
            var model = round == 1 ? opened : opened.Reopen();
            var warnings = compress(model);
            var metrics = model.Compare(data, spec, progress);
            var bytes = model.WorkingBytes() ?? step.EstimatedBytes;
            var fits = bytes <= target;
            step.MeasuredOverhead += Math.Max(0, bytes - step.EstimatedBytes) - Math.Max(0, step.EstimatedBytes - bytes) / 2; // the next round's estimate, corrected
            rounds.Add(Round(round, label, model, metrics));
            progress($"  {bytes:N0} bytes{(fits ? "" : $", over the budget of {target:N0}")}; {FidelityGate.Describe(metrics.Primary)}");
            var better = fits && (best is not { } b || Score(metrics).CompareTo(Score(b.Metrics)) > 0);
            var dropped = better ? best?.Model : model;
            if (better)
            {
                best = (model, warnings, metrics, round, step.Gamma);
            }

            dropped?.Dispose();
        }

        if (best is not { } chosen)
        {
            throw CompressException.Error(DiagnosticCodes.BudgetUnreachable,
                $"no allocation round met the size budget of {target:N0} bytes: {string.Join(", ", rounds.Select(r => $"{r.Label} → {r.Bytes:N0} bytes"))}; " +
                "raise 'size'/'bytes' or give more 'rounds' (each corrects the size estimate by what the last one measured). No output was written.", outputPath);
        }

        step.Gamma = chosen.Gamma;
        return new Compressed(chosen.Model, chosen.Warnings, chosen.Metrics, Rounds: rounds.Select(r => r with { Chosen = r.Round == chosen.Round }).ToList());
    }

    private static Compressed SearchSize(AllocateStep step, CompressionSpec spec, DataSource data, IReopenableFormat opened,
        Func<IModelFormat, List<CompressDiagnostic>> compress, Action<string> progress, string outputPath)
    {
        var rounds = new List<AllocationRound>();
        (IReopenableFormat Model, List<CompressDiagnostic> Warnings, ComparisonMetrics Metrics, int Round, double Size)? best = null;
        double lo = Math.Log(0.002), hi = 0; // log of the size fraction: infeasible at or below lo, feasible at or above hi
        var count = Math.Min(Rounds(spec, step), MaxRounds);
        IReopenableFormat? fresh = opened;
        // Before a channel prune step the searched fraction is of the source's multiply-adds (algorithms.md §18).
        var quantity = ChannelCounts(spec, step) ? "multiply-adds" : "size";
        for (var round = 1; round <= count; round++)
        {
            var size = Math.Round(Math.Exp((lo + hi) / 2), 4);
            step.SearchedSize = size;
            var label = string.Create(CultureInfo.InvariantCulture, $"{quantity} {size:0.####} of the source");
            progress($"allocation round {round}/{count}: {label} (feasible from {Math.Exp(hi):0.####}, infeasible up to {Math.Exp(lo):0.####})");
            var model = fresh ?? opened.Reopen();
            fresh = null;
            List<CompressDiagnostic> warnings;
            try
            {
                warnings = compress(model);
            }
            catch (CompressException e) when (e.Diagnostic.Code == DiagnosticCodes.BudgetUnreachable)
            {
                progress("  below what the layers can reach");
                rounds.Add(new AllocationRound(round, label, 0, null, null, null, false));
                lo = Math.Log(size);
                model.Dispose();
                continue;
            }

            var metrics = model.Compare(data, spec, progress);
            var feasible = FidelityGate.Evaluate(spec, metrics).All(r => r.Met);
            rounds.Add(Round(round, label, model, metrics));
            progress($"  {FidelityGate.Describe(metrics.Primary)}: constraints {(feasible ? "met" : "not met")}");
            var dropped = feasible ? best?.Model : model;
            if (feasible)
            {
                hi = Math.Log(size);
                best = (model, warnings, metrics, round, size);
            }
            else
            {
                lo = Math.Log(size);
            }

            dropped?.Dispose();
        }

        if (best is not { } chosen)
        {
            throw CompressException.Error(DiagnosticCodes.AllocationInfeasible,
                $"'allocate' found no size meeting the constraints in {rounds.Count} rounds: {string.Join(", ", rounds.Select(r => $"{r.Label} → {Describe(r)}"))}. No output was written.",
                outputPath);
        }

        step.SearchedSize = chosen.Size;
        return new Compressed(chosen.Model, chosen.Warnings, chosen.Metrics, Rounds: rounds.Select(r => r with { Chosen = r.Round == chosen.Round }).ToList());
    }

    private static AllocationRound Round(int round, string label, IModelFormat model, ComparisonMetrics metrics) =>
        new(round, label, model.WorkingBytes() ?? 0, metrics.CompressedAccuracy, metrics.Agreement, metrics.MeanCosine, false);

    private static string Describe(AllocationRound r) =>
        r.Accuracy is { } a ? $"accuracy {a:P2}" : r.Agreement is { } g ? $"agreement {g:P2}" : r.Cosine is { } c ? $"cosine {c:0.####}" : "unreachable";

    /// <summary>What a proxy round is judged by: accuracy, else agreement, else mean cosine; then SQNR.</summary>
    private static (double, double) Score(ComparisonMetrics m) => (m.CompressedAccuracy ?? m.Agreement ?? m.MeanCosine ?? 0, m.SqnrDb);
}
