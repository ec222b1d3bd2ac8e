using Compress.Core.Fidelity.Metrics;

namespace Compress.Core.Fidelity;

/// <summary>
/// The registry of fidelity metrics: each name (as <c>data.evaluation.metric</c> spells it), the output kinds it
/// measures, and how it is made. An output gets every metric that fits its kind.
/// </summary>
public static class FidelityMetrics
{
    /// <param name="Kind">The kind of output it measures (null: any).</param>
    /// <param name="Judges">The kind an output is measured as when the spec names this metric (null: as its shape says).</param>
    private sealed record Entry(string Name, OutputKind? Kind, OutputKind? Judges, Func<long[]?, IFidelityMetric?> Create);

    private static readonly Entry[] Entries =
    [
        new("accuracy", OutputKind.ClassScores, OutputKind.ClassScores, labels => labels is null ? null : new AccuracyMetric(labels)),
        new("agreement", OutputKind.ClassScores, OutputKind.ClassScores, _ => new AgreementMetric()),
        new("cosine", null, OutputKind.Features, _ => new CosineMetric()),
        new("sqnr", null, null, _ => new SqnrMetric()),
    ];

    /// <summary>The metric names, in the order the spec's <c>data.metric</c> choices list them.</summary>
    public static IReadOnlyList<string> Names { get; } = Entries.Select(e => e.Name).ToArray();

    /// <summary>The metrics of an output of <paramref name="kind"/> (accuracy only when labels are given).</summary>
    public static List<IFidelityMetric> For(OutputKind kind, long[]? labels) =>
        Entries.Where(e => e.Kind is null || e.Kind == kind).Select(e => e.Create(labels)).OfType<IFidelityMetric>().ToList();

    /// <summary>The kind a metric named in the spec needs its output to be measured as, or null when it fits any.</summary>
    public static OutputKind? KindFor(string? metric) => Entries.FirstOrDefault(e => e.Name == metric)?.Judges;
}

/// <summary>One output's metrics, fed batch by batch; the kind is fixed at the first batch (from its shape unless forced).</summary>
public sealed class OutputComparison(string name, long[]? labels, OutputKind? forced = null)
{
    private List<IFidelityMetric>? _metrics;
    private OutputKind _kind;
    private long[] _shape = [];

    public string Name => name;

    /// <param name="maskedSequence">Whether the model takes an attention mask (a <c>[N, T, D]</c> output is then hidden states).</param>
    public void Add(in FidelityBatch batch, bool maskedSequence)
    {
        if (_metrics is null)
        {
            _kind = forced ?? OutputKinds.Classify(batch.Shape, batch.Count, maskedSequence);
            _metrics = FidelityMetrics.For(_kind, labels);
            _shape = batch.Shape.ToArray();
            if (batch.BatchFirst)
            {
                _shape[0] = -1; // the batch axis: N
            }
        }

        foreach (var metric in _metrics)
        {
            metric.Add(batch);
        }
    }

    public OutputFidelity Result() =>
        (_metrics ?? []).Aggregate(new OutputFidelity(name, _kind, _shape), (figures, metric) => metric.Fill(figures));
}
