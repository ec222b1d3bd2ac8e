using Compress.Core.Evaluation;

namespace Compress.Core.Fidelity.Metrics;

/// <summary>Top-1 accuracy of both models against the labels; only for <c>[N, C]</c> outputs (one prediction per sample).</summary>
public sealed class AccuracyMetric(long[] labels) : IFidelityMetric
{
    private long _samples, _originalCorrect, _compressedCorrect;
    private bool _perSample = true;

    public void Add(in FidelityBatch batch)
    {
        var classes = (int)batch.Shape[^1];
        _perSample &= batch.Shape.Count == 2 && batch.BatchFirst;
        if (!_perSample)
        {
            return;
        }

        for (var i = 0; i < batch.Count; i++)
        {
            var label = labels[batch.Start + i];
            _originalCorrect += Classification.ArgMax(batch.Original.Slice(i * classes, classes)) == label ? 1 : 0;
            _compressedCorrect += Classification.ArgMax(batch.Compressed.Slice(i * classes, classes)) == label ? 1 : 0;
            _samples++;
        }
    }

    public OutputFidelity Fill(OutputFidelity figures) => !_perSample || _samples == 0 ? figures : figures with
    {
        OriginalAccuracy = _originalCorrect / (double)_samples,
        CompressedAccuracy = _compressedCorrect / (double)_samples,
    };
}
