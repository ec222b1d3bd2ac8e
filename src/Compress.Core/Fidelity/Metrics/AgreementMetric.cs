using Compress.Core.Evaluation;

namespace Compress.Core.Fidelity.Metrics;

/// <summary>Top-1 agreement: the share of predictions (argmax over the class axis) that the compressed model keeps.</summary>
public sealed class AgreementMetric : IFidelityMetric
{
    private long _predictions, _agree;

    public void Add(in FidelityBatch batch)
    {
        var classes = (int)batch.Shape[^1];
        for (var row = 0; row + classes <= batch.Original.Length; row += classes)
        {
            if (!batch.Counts(row))
            {
                continue;
            }

            _predictions++;
            _agree += Classification.ArgMax(batch.Original.Slice(row, classes)) == Classification.ArgMax(batch.Compressed.Slice(row, classes)) ? 1 : 0;
        }
    }

    public OutputFidelity Fill(OutputFidelity figures) =>
        figures with { Agreement = _predictions == 0 ? 1 : _agree / (double)_predictions, Predictions = _predictions };
}
