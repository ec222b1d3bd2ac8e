namespace Compress.Core.Passes.Quantization;

/// <summary>
/// Statistics of one activation tensor over the calibration data: min/max, and a histogram over [min, max] for
/// the estimators that clip outliers (percentile, entropy, MSE). Ranges always include 0 so it is exactly
/// representable.
/// </summary>
public sealed class ActivationRange
{
    public const int Bins = 2048;

    public float Min { get; private set; } = float.PositiveInfinity;

    public float Max { get; private set; } = float.NegativeInfinity;

    public double[]? Histogram { get; private set; }

    public void Observe(ReadOnlySpan<float> values)
    {
        if (values.IsEmpty)
        {
            return;
        }

        // Vectorised: calibration must cost little more than the forward passes themselves.
        Min = Math.Min(Min, System.Numerics.Tensors.TensorPrimitives.Min(values));
        Max = Math.Max(Max, System.Numerics.Tensors.TensorPrimitives.Max(values));
    }

    private double _signal;
    private double _noise;

    /// <summary>SQNR of this tensor alone under its chosen quantization, from <see cref="MeasureError"/>.</summary>
    public double SqnrDb => _noise == 0 ? double.PositiveInfinity : 10 * Math.Log10(_signal / _noise);

    /// <summary>Third pass (optional): the error of fake-quantizing the values with the chosen range.</summary>
    public void MeasureError(ReadOnlySpan<float> values, float lo, float scale)
    {
        double signal = 0, noise = 0;
        foreach (var v in values)
        {
            var q = Math.Clamp(MathF.Round((v - lo) / scale), 0, 255) * scale + lo;
            signal += (double)v * v;
            noise += (double)(v - q) * (v - q);
        }

        _signal += signal;
        _noise += noise;
    }

    /// <summary>Second pass: histogram over the range fixed by the first.</summary>
    public void Accumulate(ReadOnlySpan<float> values)
    {
        Histogram ??= new double[Bins];
        var lo = Math.Min(Min, 0f);
        var width = (Math.Max(Max, 0f) - lo) / Bins;
        if (width <= 0)
        {
            Histogram[0] += values.Length;
            return;
        }

        foreach (var v in values)
        {
            var bin = (int)((v - lo) / width);
            Histogram[Math.Clamp(bin, 0, Bins - 1)]++;
        }
    }

    /// <summary>The clipping range for <paramref name="method"/>.</summary>
    public (float Lo, float Hi) Range(string method, double percentile, int levels)
    {
        var lo = Math.Min(Min, 0f);
        var hi = Math.Max(Max, 0f);
        if (method == "minmax" || Histogram is null || hi <= lo)
        {
            return (lo, hi);
        }

        var width = (hi - lo) / Bins;
        float Edge(int bin) => lo + bin * width;
        var total = Histogram.Sum();
        switch (method)
        {
            case "percentile":
            {
                var tail = total * (100 - percentile) / 100;
                int a = 0, b = Bins - 1;
                for (double seen = 0; a < Bins && seen + Histogram[a] <= tail; a++)
                {
                    seen += Histogram[a];
                }

                for (double seen = 0; b > 0 && seen + Histogram[b] <= tail; b--)
                {
                    seen += Histogram[b];
                }

                return (Math.Min(Edge(a), 0f), Math.Max(Edge(b + 1), 0f));
            }

            case "mse":
            {
                // Shrink [lo, hi] by α ∈ (0, 1] and keep the α with the least expected squared error.
                var best = (Error: double.MaxValue, Alpha: 1.0);
                for (var step = 1; step <= 100; step++)
                {
                    var alpha = step / 100.0;
                    var error = QuantizationError(lo * alpha, hi * alpha, levels, width, lo);
                    if (error < best.Error)
                    {
                        best = (error, alpha);
                    }
                }

                return ((float)(lo * best.Alpha), (float)(hi * best.Alpha));
            }

            case "entropy":
                return EntropyRange(lo, hi, width, levels);
            default:
                throw new ArgumentException($"unknown calibration method '{method}'", nameof(method));
        }
    }

    private double QuantizationError(double clipLo, double clipHi, int levels, double width, double lo)
    {
        var scale = (clipHi - clipLo) / (levels - 1);
        if (scale <= 0)
        {
            return double.MaxValue;
        }

        double error = 0;
        for (var i = 0; i < Bins; i++)
        {
            if (Histogram![i] == 0)
            {
                continue;
            }

            var v = lo + (i + 0.5) * width;
            var q = Math.Clamp(Math.Round((v - clipLo) / scale), 0, levels - 1) * scale + clipLo;
            error += Histogram[i] * (v - q) * (v - q);
        }

        return error;
    }

    /// <summary>
    /// KL-divergence calibration (TensorRT's entropy method) on the side of zero holding most of the mass:
    /// for each candidate clip bin i, compare the clipped distribution P (outliers folded into the last bin) with
    /// its quantized version Q over <paramref name="levels"/> levels; keep the i with the least KL(P‖Q).
    /// </summary>
    private (float Lo, float Hi) EntropyRange(float lo, float hi, float width, int levels)
    {
        var zeroBin = Math.Clamp((int)(-lo / width), 0, Bins - 1);
        var histogram = Histogram!;
        var positive = histogram.Skip(zeroBin).ToArray();
        var negative = histogram.Take(zeroBin).Reverse().ToArray();
        var side = positive.Sum() >= negative.Sum() ? positive : negative;
        side[0] = 0; // the bin holding 0 is exact at any threshold (ReLU zeros, image background): it must not pull the threshold down
        var half = negative.Sum() == 0 || positive.Sum() == 0 ? levels - 1 : Math.Max(levels / 2, 2); // one-sided data uses every level
        var bestBin = side.Length;
        var bestKl = double.MaxValue;
        for (var i = half; i <= side.Length; i++)
        {
            var p = side.Take(i).ToArray();
            p[i - 1] += side.Skip(i).Sum();
            var q = new double[i];
            var chunk = i / (double)half;
            for (var j = 0; j < half; j++)
            {
                var start = (int)(j * chunk);
                var end = Math.Max(start + 1, (int)((j + 1) * chunk));
                double sum = 0;
                var nonzero = 0;
                for (var k = start; k < end && k < i; k++)
                {
                    sum += side[k];
                    nonzero += side[k] > 0 ? 1 : 0;
                }

                for (var k = start; k < end && k < i; k++)
                {
                    q[k] = side[k] > 0 ? sum / nonzero : 0;
                }
            }

            double pTotal = p.Sum(), qTotal = q.Sum(), kl = 0;
            for (var k = 0; k < i; k++)
            {
                if (p[k] > 0)
                {
                    var pk = p[k] / pTotal;
                    var qk = q[k] > 0 ? q[k] / qTotal : 1e-12;
                    kl += pk * Math.Log(pk / qk);
                }
            }

            if (kl < bestKl)
            {
                bestKl = kl;
                bestBin = i;
            }
        }

        var threshold = bestBin * width;
        return (Math.Max(lo, -threshold), Math.Min(hi, threshold));
    }
}
