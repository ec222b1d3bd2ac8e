using Compress.Core.Diagnostics;
using Compress.Core.Execution;
using Compress.Core.Passes;
using static TorchSharp.torch;

namespace Compress.Core.Allocation;

/// <summary>
/// HAWQ's layer sensitivity (algorithms.md §5): the trace of the loss Hessian over each layer's weights, estimated by
/// Hutchinson probes through the TorchSharp executor (<see cref="GradientSource"/>, loss against the calibration labels
/// or the model's own predictions), divided by the layer's weight count. Probes cycle over the calibration samples a
/// batch at a time and stop when every layer's running mean moved less than 10⁻³ relatively (at least
/// <see cref="MinProbes"/>, at most <see cref="MaxProbes"/>). Seeded: the same model and data give the same figures.
/// </summary>
public static class LayerSensitivity
{
    /// <summary>
    /// Sensitivities s_l = Tr(H_l)/n_l · ‖W_l‖² (<paramref name="raw"/>) as the proxy's weights: normalised to mean 1,
    /// floored at 10⁻⁶ (a layer the probes found flat still counts a little), all 1 when nothing was measured.
    /// </summary>
    public static double[] Normalised(IReadOnlyList<double> raw)
    {
        var mean = raw.Count == 0 ? 0 : raw.Average();
        return raw.Select(s => mean > 0 ? Math.Max(s / mean, 1e-6) : 1).ToArray();
    }

    public const int MinProbes = 10;
    public const int MaxProbes = 100;
    private const int Batch = 128;
    private const double Tolerance = 1e-3;

    /// <returns>Tr(H_l)/n_l per weight (clamped at 0: a probe mean can come out negative at a saddle), or null with
    /// <paramref name="why"/> when the executor cannot differentiate the model.</returns>
    public static double[]? Traces(CompressionContext context, IReadOnlyList<string> weights, IReadOnlyList<long> counts, out string? why)
    {
        why = null;
        GradientSource source;
        try
        {
            source = new GradientSource(context.Model, context.Calibration, weights);
        }
        catch (CompressException e) when (e.Diagnostic.Code == DiagnosticCodes.OperatorNotExecutable)
        {
            why = e.Diagnostic.Message;
            return null;
        }

        using (source)
        {
            var random = new Generator(20161);
            var sums = new double[weights.Count];
            var means = new double[weights.Count];
            var batches = Math.Max(1, (source.Count + Batch - 1) / Batch);
            for (var probe = 1; probe <= MaxProbes; probe++)
            {
                var start = (probe - 1) % batches * Batch;
                var values = source.HessianProbe(start, Math.Min(Batch, source.Count - start), random);
                var moved = 0.0;
                for (var l = 0; l < values.Length; l++)
                {
                    sums[l] += values[l];
                    var mean = sums[l] / probe;
                    moved = Math.Max(moved, Math.Abs(mean - means[l]) / Math.Max(Math.Abs(mean), 1e-30));
                    means[l] = mean;
                }

                if (probe >= MinProbes && moved < Tolerance)
                {
                    context.Progress($"sensitivity: Hessian traces of {weights.Count} layers after {probe} Hutchinson probes");
                    break;
                }

                if (probe == MaxProbes)
                {
                    context.Progress($"sensitivity: Hessian traces of {weights.Count} layers after {MaxProbes} Hutchinson probes (last relative move {moved:0.###})");
                }
            }

            return means.Select((m, l) => Math.Max(m, 0) / counts[l]).ToArray();
        }
    }
}
