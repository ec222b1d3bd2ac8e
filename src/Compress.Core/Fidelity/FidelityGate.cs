using System.Globalization;
using Compress.Core.Diagnostics;
using Compress.Core.Evaluation;
using Compress.Core.Reports;
using Compress.Spec;

namespace Compress.Core.Fidelity;

/// <summary>
/// What a compressed model must meet before it ships: the spec's constraints on the judged output, or, when the spec
/// sets none, the default floor — agreement ≥ <see cref="AgreementFloor"/> for class scores, mean cosine ≥
/// <see cref="CosineFloor"/> for features. Below the floor the run fails (CMP0033); between the floor and "close"
/// (<see cref="AgreementClose"/>, <see cref="CosineClose"/>) it warns (CMP0034), as it does for any other output
/// below the floor. Shared by every format's pipeline.
/// </summary>
public static class FidelityGate
{
    public const double AgreementFloor = 0.90;
    public const double AgreementClose = 0.97;
    public const double CosineFloor = 0.95;
    public const double CosineClose = 0.99;

    /// <summary>The constraints that need class scores, and why.</summary>
    private static readonly (string Key, string Why) MaxAccuracyDrop = ("maxAccuracyDrop", "accuracy needs a class-score output [N, C] and labels");

    private static readonly (string Key, string Why) MinAgreement = ("minAgreement", "agreement needs a class axis at least 2 wide; use minCosine or minSqnrDb");

    public static bool HasFidelityConstraint(SpecConstraints c) =>
        c.MaxAccuracyDrop is not null || c.MinAgreement is not null || c.MinCosine is not null || c.MinSqnrDb is not null;

    /// <summary>Each constraint the spec sets, against the judged output; a constraint its kind cannot measure is a spec error.</summary>
    public static List<ConstraintResult> Evaluate(CompressionSpec spec, ComparisonMetrics metrics)
    {
        var limits = spec.Constraints;
        var results = new List<ConstraintResult>();
        if (limits.MaxAccuracyDrop is { } drop)
        {
            var measured = metrics.AccuracyDrop ?? throw Unmeasurable(spec, metrics.Output, OutputKinds.Name(metrics.Kind), MaxAccuracyDrop);
            results.Add(new ConstraintResult("maxAccuracyDrop", drop, measured, measured <= drop + 1e-12));
        }

        if (limits.MinAgreement is { } agreement)
        {
            var measured = metrics.Agreement ?? throw Unmeasurable(spec, metrics.Output, OutputKinds.Name(metrics.Kind), MinAgreement);
            results.Add(new ConstraintResult("minAgreement", agreement, measured, measured >= agreement));
        }

        if (limits.MinCosine is { } cosine)
        {
            var measured = metrics.MeanCosine ?? throw Unmeasurable(spec, metrics.Output, OutputKinds.Name(metrics.Kind), ("minCosine", "the output produced no samples"));
            results.Add(new ConstraintResult("minCosine", cosine, measured, measured >= cosine));
        }

        if (limits.MinSqnrDb is { } sqnr)
        {
            results.Add(new ConstraintResult("minSqnrDb", sqnr, metrics.SqnrDb, metrics.SqnrDb >= sqnr));
        }

        return results;
    }

    /// <summary>
    /// Checks the spec's constraints, or the default floor when it sets none. Throws (nothing is written) when one
    /// fails, naming the measured figures and <paramref name="worstLayers"/>; returns the results and the warnings.
    /// </summary>
    public static (List<ConstraintResult> Results, List<CompressDiagnostic> Warnings) Check(
        CompressionSpec spec, ComparisonMetrics metrics, IEnumerable<string> worstLayers, string outputPath)
    {
        var warnings = new List<CompressDiagnostic>();
        var results = Evaluate(spec, metrics);
        var failed = results.Where(r => !r.Met).ToList();
        if (failed.Count > 0)
        {
            throw CompressException.Error(DiagnosticCodes.ConstraintNotMet,
                $"{string.Join("; ", failed.Select(f => Invariant($"{f.Name} {f.Limit:0.####} not met (measured {f.Measured:0.####})")))}; " +
                $"{Describe(metrics.Primary)} on {metrics.Samples} samples; worst layers: {string.Join(", ", worstLayers)}. No output was written.", outputPath);
        }

        var judgedByFloor = !HasFidelityConstraint(spec.Constraints);
        foreach (var output in metrics.Outputs)
        {
            var (name, measured, floor, close) = FloorOf(output);
            if (measured is not { } value)
            {
                continue;
            }

            // Written as "not at least" so that NaN (an output that blew up) fails rather than passes.
            var belowFloor = !(value >= floor);
            if (belowFloor && judgedByFloor && output.Name == metrics.Output)
            {
                throw CompressException.Error(DiagnosticCodes.FidelityBelowFloor,
                    Invariant($"the compressed model collapsed: output '{output.Name}' ({OutputKinds.Name(output.Kind)}) {name} {value:0.####} is below the default floor {floor}") +
                    $" ({Describe(output)} on {metrics.Samples} samples); layers contributing most to the error: {string.Join(", ", worstLayers)}. " +
                    $"Compress less, exclude those layers, or set constraints.{(output.Kind == OutputKind.ClassScores ? "minAgreement" : "minCosine")} to accept it. No output was written.", outputPath);
            }

            if (belowFloor || (!(value >= close) && judgedByFloor && output.Name == metrics.Output))
            {
                warnings.Add(CompressDiagnostic.Warning(DiagnosticCodes.FidelityLow,
                    Invariant($"output '{output.Name}' ({OutputKinds.Name(output.Kind)}) {name} {value:0.####} is ") +
                    (belowFloor ? Invariant($"below the default floor {floor}") : Invariant($"under {close}: close to the default floor {floor}")) +
                    $" ({Describe(output)}); check the model's results or set a constraint", outputPath));
            }
        }

        return (results, warnings);
    }

    /// <summary>
    /// For a model that could have been run on data but was given none: constraints are a spec error (CMP0107); else
    /// the report's note that the default floor was not checked.
    /// </summary>
    public static string Unmeasured(CompressionSpec spec) => HasFidelityConstraint(spec.Constraints)
        ? throw CompressException.Error(SpecCodes.Inconsistent, "constraints need evaluation or calibration data to be checked", spec.File, 1, 1)
        : "fidelity not measured: the spec names no evaluation or calibration data, so the default floor could not be checked";

    /// <summary>The three layers with the largest relative weight error, as the failure messages name them.</summary>
    public static IEnumerable<string> WorstLayers(IEnumerable<(string Node, string Format, double RelativeError)> layers) =>
        layers.OrderByDescending(l => l.RelativeError).Take(3).Select(l => Invariant($"{l.Node} ({l.Format}, relative error {l.RelativeError:E2})"));

    private static (string Name, double? Measured, double Floor, double Close) FloorOf(OutputFidelity output) => output.Kind == OutputKind.ClassScores
        ? ("agreement", output.Agreement, AgreementFloor, AgreementClose)
        : ("mean cosine", output.MeanCosine, CosineFloor, CosineClose);

    /// <summary>The figures of one output in a line: accuracy and agreement, or cosine; SQNR always.</summary>
    public static string Describe(OutputFidelity o)
    {
        var parts = new List<string>();
        if (o.OriginalAccuracy is { } a && o.CompressedAccuracy is { } b)
        {
            parts.Add(Invariant($"accuracy {a:P2} → {b:P2}"));
        }

        if (o.Agreement is { } agreement)
        {
            parts.Add(Invariant($"agreement {agreement:P2}"));
        }

        if (o.MeanCosine is { } cosine)
        {
            parts.Add(Invariant($"cosine mean {cosine:0.####}, 1st percentile {o.P1Cosine:0.####}"));
        }

        parts.Add(Invariant($"SQNR {o.SqnrDb:0.0} dB"));
        return string.Join(", ", parts);
    }

    /// <summary>
    /// Before any step: a constraint that needs class scores (agreement, accuracy) on an output whose declared shape
    /// already makes it features (<see cref="OutputKinds.Declared"/>, or the spec's metric) is a spec error at once, not
    /// after the whole compression.
    /// </summary>
    /// <param name="kind">The judged output's kind as far as it is known before a run (null: decided by the run).</param>
    /// <param name="why">What settled the kind, for the message: "declared [?, 1]" (the model's own output shape), or the spec's metric.</param>
    public static void CheckMeasurable(CompressionSpec spec, string output, OutputKind? kind, string why)
    {
        var limits = spec.Constraints;
        var needsClasses = limits.MaxAccuracyDrop is not null ? MaxAccuracyDrop : limits.MinAgreement is not null ? MinAgreement : default;
        if (kind == OutputKind.Features && needsClasses.Key is not null)
        {
            throw Unmeasurable(spec, output, $"{OutputKinds.Name(OutputKind.Features)}, {why}", needsClasses);
        }
    }

    /// <param name="kind">The output's kind as the message gives it.</param>
    private static CompressException Unmeasurable(CompressionSpec spec, string output, string kind, (string Key, string Why) constraint)
    {
        var (line, column) = spec.Constraints.At(constraint.Key);
        return CompressException.Error(SpecCodes.Inconsistent,
            $"constraints.{constraint.Key} cannot be measured on output '{output}' ({kind}): {constraint.Why}", spec.File, line, column);
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
