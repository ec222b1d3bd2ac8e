namespace Compress.Core.Fidelity.Metrics;

/// <summary>SQNR = 10·log10(Σ y² / Σ (y − ŷ)²) over every value of the output (padding positions left out).</summary>
public sealed class SqnrMetric : IFidelityMetric
{
    private double _signal, _noise;

    public void Add(in FidelityBatch batch)
    {
        for (var i = 0; i < batch.Original.Length; i++)
        {
            if (!batch.Counts(i))
            {
                continue;
            }

            double y = batch.Original[i], d = y - batch.Compressed[i];
            _signal += y * y;
            _noise += d * d;
        }
    }

    public OutputFidelity Fill(OutputFidelity figures) =>
        figures with { SqnrDb = _noise == 0 ? double.PositiveInfinity : _signal == 0 ? double.NegativeInfinity : 10 * Math.Log10(_signal / _noise) };
}
