using Compress.Core.Evaluation;
using Compress.Core.Reports;
using Compress.Spec;

namespace Compress.Core.Formats;

/// <summary>
/// One model format's part of a compression run. <see cref="CompressionPipeline"/> owns the rest — the step loop with
/// its progress and "changed nothing" warning (CMP0036), the fidelity floor and constraints (<c>FidelityGate</c>), the
/// size figures and the report — for every format alike; a format opens its model (checking the spec against what it
/// offers), applies a step to its working copy, finishes it, and writes the artifact. What a format can do beyond
/// that it says by the capabilities it implements: <see cref="IRunnableFormat"/>, <see cref="ITimedFormat"/>,
/// <see cref="IReopenableFormat"/>.
/// </summary>
public interface IModelFormat : IStepTarget, IDisposable
{
    /// <summary>Bytes of the source model on disk.</summary>
    long SourceBytes { get; }

    /// <summary>Weights of the source model.</summary>
    long SourceParameters { get; }

    /// <summary>Per weight tensor, what the steps did to it.</summary>
    IReadOnlyList<LayerFigures> Layers();

    /// <summary>
    /// Makes the working copy, after the last step, what would be written (ONNX: pruned weights in their sparse
    /// storage, the result checked to load); a model the format cannot write is refused naming <paramref name="outputPath"/>.
    /// </summary>
    void Finish(string outputPath, Action<string> progress);

    /// <summary>
    /// Writes the artifact atomically and returns its bytes on disk; one larger than the source is refused (CMP0035)
    /// before anything is replaced.
    /// </summary>
    long Save(string outputPath);

    /// <summary>Notes for the report (how to load the artifact, what was done to the model besides the steps).</summary>
    IReadOnlyList<string> Notes { get; }

    /// <summary>The per-layer allocation the steps made, for the report (null when none).</summary>
    AllocationFigures? Allocation => null;

    /// <summary>The bytes the artifact would have if written now (after <see cref="Finish"/>), or null where the format cannot tell without writing.</summary>
    long? WorkingBytes() => null;
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

/// <summary>
/// A format whose original and compressed models run on data, so the fidelity gate can judge the compression; without
/// data, constraints are refused and the report says fidelity was not measured.
/// </summary>
public interface IRunnableFormat : IModelFormat
{
    /// <summary>Original against compressed on <paramref name="data"/>: the spec's evaluation data, else its calibration data.</summary>
    ComparisonMetrics Compare(DataSource data, CompressionSpec spec, Action<string> progress);
}

/// <summary>A format whose models' speed can be measured on the data (<c>compress run</c> without <c>--no-latency</c>).</summary>
public interface ITimedFormat : IRunnableFormat
{
    /// <summary>Original against compressed for speed on <paramref name="data"/>; a figure for the report, never a check.</summary>
    LatencyFigures MeasureLatency(DataSource data);
}

/// <summary>
/// A format that can say how much work its model does at each stage of the run (<see cref="StageFigures"/>): the
/// report's stages, from the source through every step to the model written.
/// </summary>
public interface IStagedFormat : ITimedFormat
{
    /// <summary>Multiply-adds per sample of the source (<paramref name="source"/>) or of the working copy as it is now; null where they cannot be counted.</summary>
    long? MultiplyAdds(bool source);

    /// <summary>Batch-1 latency of the working copy as it is now (one thread, median), in milliseconds; null where it cannot run.</summary>
    double? Batch1Ms();
}

/// <summary>
/// A format that can compress its model again from the same source: each round of <c>"sparsity": "auto"</c>
/// (<see cref="AutoSparsity"/>) is a fresh working copy that shares what was read once (the original, the data).
/// </summary>
public interface IReopenableFormat : IRunnableFormat
{
    /// <summary>A fresh working copy of the source, as opened and before any step.</summary>
    IReopenableFormat Reopen();
}
