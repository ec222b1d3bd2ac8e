using Compress.Core.Evaluation;
using Compress.Core.Reports;
using Compress.Spec;

namespace Compress.Core.Formats;

/// <summary>
/// One model format's part of a compression run. <see cref="CompressionPipeline"/> owns the rest — the step loop with
/// its progress and "changed nothing" warning (CMP0036), the fidelity floor and constraints (<c>FidelityGate</c>), the
/// size figures and the report — for every format alike; a format opens its model, applies a step to its working copy,
/// runs original and compressed on data when it can, and writes the artifact.
/// </summary>
public interface IModelFormat : IStepTarget, IDisposable
{
    /// <summary>Bytes of the source model on disk.</summary>
    long SourceBytes { get; }

    /// <summary>Weights of the source model.</summary>
    long SourceParameters { get; }

    /// <summary>Per weight tensor, what the steps did to it.</summary>
    IReadOnlyList<LayerFigures> Layers();

    /// <summary>Original against compressed on <paramref name="data"/>; null when the format has no model to run.</summary>
    ComparisonMetrics? Compare(DataSource data, CompressionSpec spec, Action<string> progress);

    /// <summary>Writes the artifact atomically; one larger than the source is refused (CMP0035) before anything is replaced.</summary>
    void Save(string outputPath);

    /// <summary>Notes for the report (how to load the artifact, say).</summary>
    IReadOnlyList<string> Notes { get; }
}

/// <summary>What the shared step loop (<see cref="CompressionPipeline"/>) applies the spec's steps to.</summary>
public interface IStepTarget
{
    /// <summary>Applies one spec step to the working copy (the spec was checked against the format when it was opened).</summary>
    void Apply(SpecStep step, Action<string> progress);

    /// <summary>What a step changes when it does anything; equal before and after a step that changed nothing.</summary>
    string Fingerprint();

    /// <summary>Why a step may have found nothing to change, for the CMP0036 warning.</summary>
    string NothingChangedHint(SpecStep step);
}
