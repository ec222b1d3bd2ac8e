using Compress.Core.Diagnostics;
using Compress.Core.Evaluation;
using Compress.Spec;

namespace Compress.Core.Fidelity;

/// <summary>
/// CMP0080: a run whose spec names no real data — none at all, or only calibration inputs synthesised from the model
/// (<see cref="CompressionSpec.SyntheticCalibration"/>, which never judge the result) — wrote a model nobody checked on
/// real inputs. The warning reaches the CLI, the build log (as an MSBuild warning) and every report.
/// </summary>
public static class DataFreeWarning
{
    /// <summary>The warning for a run measured by <paramref name="metrics"/> (null: not compared), or null when real data checked it.</summary>
    public static CompressDiagnostic? For(CompressionSpec spec, ComparisonMetrics? metrics)
    {
        if (metrics is not null || spec.Evaluation is not null || spec.Calibration is not null)
        {
            return null;
        }

        const string Advice = "its accuracy is unknown: check it on real inputs before shipping, or name data.evaluation so every build checks it";
        return spec.SyntheticCalibration is { } synthetic
            ? new CompressDiagnostic(DiagnosticCodes.NotCheckedOnRealData, DiagnosticSeverity.Warning,
                $"the compressed model was not checked on real data: the spec names none (calibration inputs are synthesised from the model's BatchNormalization statistics, and synthesised inputs never judge the result); {Advice}",
                spec.File, synthetic.Line, synthetic.Column)
            : CompressDiagnostic.Warning(DiagnosticCodes.NotCheckedOnRealData,
                spec.Training is null
                    ? $"the compressed model was not checked on real data: the spec names no data (data-free compression); {Advice}"
                    : $"the compressed model was not checked on real data: data.training only trains the finetune step, and the spec names no data.evaluation or data.calibration to compare on; {Advice}",
                spec.File);
    }
}
