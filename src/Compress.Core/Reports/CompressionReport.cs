using Compress.Core.Diagnostics;
using Compress.Core.Evaluation;

namespace Compress.Core.Reports;

/// <summary>What `compress run` did and measured. Written as JSON (for tools) and Markdown (for people).</summary>
public sealed record CompressionReport(
    string Model,
    string Output,
    string Spec,
    IReadOnlyList<string> Steps,
    SizeFigures Size,
    IReadOnlyList<LayerFigures> Layers,
    ComparisonMetrics? Metrics,
    IReadOnlyList<ConstraintResult> Constraints,
    LatencyFigures? Latency,
    IReadOnlyList<string> Notes,
    SearchFigures? Search = null,
    IReadOnlyList<CompressDiagnostic>? Warnings = null,
    AllocationFigures? Allocation = null,
    IReadOnlyList<StageFigures>? Stages = null);

public sealed record SizeFigures(long OriginalBytes, long CompressedBytes, long OriginalParameters, double Ratio, double OverallSparsity);

public sealed record LayerFigures(string Weight, string Node, string OpType, long Parameters, double Sparsity, int Bits, string Format, double RelativeError);

public sealed record ConstraintResult(string Name, double Limit, double Measured, bool Met);

/// <summary>Median milliseconds of one run, one thread, at batch 1 and batch N.</summary>
public sealed record LatencyFigures(int BatchN, double OriginalBatch1Ms, double CompressedBatch1Ms, double OriginalBatchNMs, double CompressedBatchNMs)
{
    public bool CompressedIsSlower => CompressedBatch1Ms > OriginalBatch1Ms * 1.05 || CompressedBatchNMs > OriginalBatchNMs * 1.05;

    /// <summary>
    /// Weight-only models: the written model's batch-1 milliseconds in each form its layers can take, the shipped one
    /// marked (<see cref="Evaluation.WeightFormTiming"/>); null when there is no choice of form to report.
    /// </summary>
    public IReadOnlyList<FormFigures>? Forms { get; init; }
}

/// <summary>One weight-only form of the written model (<c>int8 at load</c>, <c>float at load</c>, <c>MatMulNBits</c>) and its batch-1 median milliseconds.</summary>
public sealed record FormFigures(string Form, double Batch1Ms, bool Shipped);

/// <summary>
/// The work of the model at one stage of the run — <c>source</c>, after each step, <c>written</c> — for one sample:
/// multiply-adds of its Conv/ConvTranspose/Gemm/MatMul nodes (quantized forms counted as their float op) and the batch-1 latency (one
/// thread, median; a step's when latency is measured, <c>source</c>/<c>written</c> the figures of <see cref="LatencyFigures"/>).
/// Null where not measured.
/// </summary>
public sealed record StageFigures(string Stage, long? MultiplyAdds, double? Batch1Ms);

/// <summary><c>"sparsity": "auto"</c>: every compress-and-evaluate round, in order, and the sparsity chosen.</summary>
public sealed record SearchFigures(string Method, double Chosen, IReadOnlyList<SearchPoint> Points);

/// <summary>One round of the search: the sparsity tried, what it measured, and whether every constraint held.</summary>
public sealed record SearchPoint(double Sparsity, double? Accuracy, double? Agreement, double? Cosine, bool Feasible);
