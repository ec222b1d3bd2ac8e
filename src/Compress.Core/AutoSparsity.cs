using Compress.Core.Calibration;
using Compress.Core.Diagnostics;
using Compress.Core.Evaluation;
using Compress.Core.Onnx;
using Compress.Core.Passes;
using Compress.Core.Reports;
using Compress.Spec;

namespace Compress.Core;

/// <summary>
/// <c>"sparsity": "auto"</c> (algorithms.md §10): the highest sparsity of the step whose whole compression still
/// meets the spec's constraints, found by bisection over [0, cap] — each round a full compression and an
/// evaluation — stopping when the bracket is narrower than half a point or after <see cref="MaxRounds"/> rounds.
/// Assumes accuracy falls as sparsity rises (a round that fails lowers the upper end). The cap is
/// <c>maxLayerSparsity</c> for a global threshold (no layer may exceed it), else 0.99.
/// </summary>
internal static class AutoSparsity
{
    public const int MaxRounds = 10;
    private const double Tolerance = 0.005;

    public sealed record Result(OnnxModel Model, CompressionContext Context, ComparisonMetrics Metrics, SearchFigures Figures);

    public static Result Run(PruneStep step, CompressionSpec spec, OnnxModel original, CalibrationSet data,
        Func<(OnnxModel Model, CompressionContext Context)> compress, Action<string> progress, string outputPath)
    {
        var points = new List<SearchPoint>();
        (OnnxModel Model, CompressionContext Context, ComparisonMetrics Metrics)? best = null;
        double lo = 0, hi = step.Scope == "global" ? Math.Min(0.99, step.MaxLayerSparsity) : 0.99;
        for (var round = 1; round <= MaxRounds && hi - lo >= Tolerance; round++)
        {
            var sparsity = Math.Round((lo + hi) / 2, 4);
            step.Sparsity = sparsity;
            progress($"sparsity search round {round}: {sparsity:P1} (feasible up to {lo:P1}, infeasible from {hi:P1})");
            var (model, context) = compress();
            var metrics = CompressionPipeline.Compare(original, model, data, spec);
            var feasible = Fidelity.FidelityGate.Evaluate(spec, metrics).All(r => r.Met);
            points.Add(new SearchPoint(sparsity, metrics.CompressedAccuracy, metrics.Agreement, metrics.MeanCosine, feasible));
            progress($"  {Fidelity.FidelityGate.Describe(metrics.Primary)}: constraints {(feasible ? "met" : "not met")}");
            if (feasible)
            {
                lo = sparsity;
                best = (model, context, metrics);
            }
            else
            {
                hi = sparsity;
            }
        }

        if (best is not { } chosen)
        {
            throw CompressException.Error(DiagnosticCodes.ConstraintNotMet,
                $"'sparsity': 'auto' found no sparsity meeting the constraints: {string.Join(", ", points.Select(p => $"{p.Sparsity:P1} → {(p.Accuracy is { } a ? $"accuracy {a:P2}" : p.Agreement is { } g ? $"agreement {g:P2}" : $"cosine {p.Cosine:0.####}")}"))}. No output was written.",
                outputPath);
        }

        step.Sparsity = lo;
        chosen.Context.Notes.Add($"sparsity 'auto': {lo:P1} is the highest of {points.Count} compress-and-evaluate rounds meeting the constraints");
        return new Result(chosen.Model, chosen.Context, chosen.Metrics, new SearchFigures(step.Method, lo, points));
    }
}
