using Compress.Core.Diagnostics;
using Compress.Core.Evaluation;
using Compress.Core.Formats;
using Compress.Core.Reports;
using Compress.Spec;

namespace Compress.Core;

/// <summary>
/// <c>"sparsity": "auto"</c> (algorithms.md §10): the highest sparsity of the step whose whole compression still
/// meets the spec's constraints, found by bisection over [0, cap] — each round a full compression of a fresh working
/// copy (<see cref="IReopenableFormat"/>) and an evaluation — stopping when the bracket is narrower than half a point
/// or after <see cref="MaxRounds"/> rounds. Assumes accuracy falls as sparsity rises (a round that fails lowers the
/// upper end). The cap is <c>maxLayerSparsity</c> for a global threshold (no layer may exceed it), else 0.99.
/// </summary>
internal static class AutoSparsity
{
    public const int MaxRounds = 10;
    private const double Tolerance = 0.005;

    /// <param name="opened">The model as the pipeline opened it: the first round's working copy; later rounds reopen it.</param>
    /// <param name="compress">One compression of a working copy by the spec's steps (the pipeline's step loop and finishing stage).</param>
    /// <returns>The chosen round; its model is <paramref name="opened"/> or a later round's, which the caller disposes.</returns>
    /// <remarks>Every round not chosen is disposed as soon as it is superseded or fails, so at most two working copies are held.</remarks>
    public static Compressed Run(PruneStep step, CompressionSpec spec, DataSource data, IReopenableFormat opened,
        Func<IModelFormat, List<CompressDiagnostic>> compress, Action<string> progress, string outputPath)
    {
        var points = new List<SearchPoint>();
        (IReopenableFormat Model, List<CompressDiagnostic> Warnings, ComparisonMetrics Metrics)? best = null;
        double lo = 0, hi = step.Scope == "global" ? Math.Min(0.99, step.MaxLayerSparsity) : 0.99;
        for (var round = 1; round <= MaxRounds && hi - lo >= Tolerance; round++)
        {
            var sparsity = Math.Round((lo + hi) / 2, 4);
            step.Sparsity = sparsity;
            progress($"sparsity search round {round}: {sparsity:P1} (feasible up to {lo:P1}, infeasible from {hi:P1})");
            var model = round == 1 ? opened : opened.Reopen();
            var warnings = compress(model);
            var metrics = model.Compare(data, spec, progress);
            var feasible = Fidelity.FidelityGate.Evaluate(spec, metrics).All(r => r.Met);
            points.Add(new SearchPoint(sparsity, metrics.CompressedAccuracy, metrics.Agreement, metrics.MeanCosine, feasible));
            progress($"  {Fidelity.FidelityGate.Describe(metrics.Primary)}: constraints {(feasible ? "met" : "not met")}");
            var dropped = feasible ? best?.Model : model;
            if (feasible)
            {
                lo = sparsity;
                best = (model, warnings, metrics);
            }
            else
            {
                hi = sparsity;
            }

            dropped?.Dispose(); // its working copy goes (as large as the model); the opened one too when a later round wins
        }

        if (best is not { } chosen)
        {
            throw CompressException.Error(DiagnosticCodes.ConstraintNotMet,
                $"'sparsity': 'auto' found no sparsity meeting the constraints: {string.Join(", ", points.Select(p => $"{p.Sparsity:P1} → {(p.Accuracy is { } a ? $"accuracy {a:P2}" : p.Agreement is { } g ? $"agreement {g:P2}" : $"cosine {p.Cosine:0.####}")}"))}. No output was written.",
                outputPath);
        }

        step.Sparsity = lo;
        return new Compressed(chosen.Model, chosen.Warnings, chosen.Metrics, new SearchFigures(step.Method, lo, points));
    }

    /// <summary>The report's note on the search.</summary>
    public static string Note(SearchFigures search) =>
        $"sparsity 'auto': {search.Chosen:P1} is the highest of {search.Points.Count} compress-and-evaluate rounds meeting the constraints";
}
