namespace Compress.Core.Fidelity.Metrics;

/// <summary>
/// Per-sample cosine similarity cos(y, ŷ) = y·ŷ / (‖y‖‖ŷ‖) over each sample's values (padding positions left out);
/// reported as the mean and the 1st percentile. Two all-zero samples count as identical (1), one as orthogonal (0).
/// </summary>
public sealed class CosineMetric : IFidelityMetric
{
    private readonly List<double> _cosines = [];

    public void Add(in FidelityBatch batch)
    {
        var size = batch.SampleSize;
        for (var s = 0; s < batch.Samples; s++)
        {
            double dot = 0, yy = 0, zz = 0;
            for (var i = s * size; i < (s + 1) * size; i++)
            {
                if (!batch.Counts(i))
                {
                    continue;
                }

                double y = batch.Original[i], z = batch.Compressed[i];
                dot += y * z;
                yy += y * y;
                zz += z * z;
            }

            _cosines.Add(yy == 0 && zz == 0 ? 1 : yy == 0 || zz == 0 ? 0 : Math.Clamp(dot / Math.Sqrt(yy * zz), -1, 1));
        }
    }

    public OutputFidelity Fill(OutputFidelity figures)
    {
        if (_cosines.Count == 0)
        {
            return figures;
        }

        var sorted = _cosines.Order().ToArray();
        return figures with { MeanCosine = _cosines.Average(), P1Cosine = sorted[(int)Math.Floor(0.01 * (sorted.Length - 1))] };
    }
}
