using Compress.Core.Calibration;
using Compress.Core.Evaluation;
using Compress.Core.Fidelity;
using Compress.Core.Onnx;
using Compress.Core.Passes;
using Compress.Core.Passes.Finetune;
using Compress.Core.Passes.SecondOrder;
using Compress.Core.Torch;
using static TorchSharp.torch;

namespace Compress.Core.Allocation;

/// <summary>
/// How far a changed model's output moves from the model it was measured on, on the first <see cref="MaxSamples"/>
/// calibration samples (algorithms.md §18): for class scores KL(softmax(z) ‖ softmax(ẑ)) per prediction (the logits
/// before the output's Softmax where there is one — the distillation loss of §17 at T = 1), for any other output
/// Σ(y − ŷ)² / Σy². The output judged is the spec's evaluation output, else the model's first. Where that output is a
/// Gemm's, the Gemm is refitted towards the reference first (<see cref="Readout"/>), as the pruner's refit of the last
/// layer makes up for cuts before it. The allocation judges a cut held out (<see cref="HeldOut"/>): refitted on the even
/// samples and on the odd, each sample judged by the fit that did not see it.
/// </summary>
internal sealed class OutputError : IDisposable
{
    /// <summary>Samples compared: enough to rank cuts whose errors differ several-fold, cheap enough for one run per choice.</summary>
    public const int MaxSamples = 512;

    /// <summary>Samples per ONNX Runtime run.</summary>
    private const int Batch = 64;

    private readonly CalibrationSet _data;
    private readonly int _count;
    private readonly Tensor _reference;
    private readonly bool _readout;
    private readonly double _ridge;
    private int _judged; // HeldOut calls, and those judged in-sample (held out where fewer)
    private int _inSample;

    private OutputError(CalibrationSet data, int count, string output, OutputKind kind, Tensor reference, bool readout, double ridge)
    {
        (_data, _count, Output, Kind, _reference, _readout, _ridge) = (data, count, output, kind, reference, readout, ridge);
    }

    /// <summary>The value compared (the judged output, or the logits before its Softmax).</summary>
    public string Output { get; }

    public OutputKind Kind { get; }

    /// <summary>"KL of the class scores 'logits' on 512 calibration samples" (for notes).</summary>
    public string Describe() =>
        $"{(Kind == OutputKind.ClassScores ? "KL divergence of the class scores" : "relative squared error of")} '{Output}' against the dense model on {_count:N0} calibration samples{(_readout ? ", its Gemm refitted" : "")}{(_inSample < _judged ? ", held out (each refit fitted on the even or the odd samples, judged on the others)" : "")}{(_inSample < _judged && _inSample > 0 ? $"; {_inSample:N0} of {_judged:N0} choices judged in-sample (their consumers' inputs do not put the samples first), which favours cutting those groups" : "")}";

    /// <summary>The reference: the model in <paramref name="context"/> as it is now, on its calibration data.</summary>
    /// <param name="damping">The prune step's damping: the readout is refitted with the ridge the pruner refits with.</param>
    public static OutputError Of(CompressionContext context, double damping)
    {
        var (_, output) = Passes.Finetune.DistillationData.Logits(context);
        var data = context.Calibration;
        var count = Math.Min(MaxSamples, data.Count);
        Tensor reference;
        using (var run = Run(context.Model, data, count, output))
        {
            reference = run.to_type(ScalarType.Float64).DetachFromDisposeScope(); // once: every comparison takes it in float64
        }

        var kind = OutputKinds.Classify(reference.shape, count, maskedSequence: false);
        return new OutputError(data, count, output, kind, reference, IsReadout(context.Model, output) is not null,
            Passes.Pruning.Channels.ChannelPruner.RefitRidge(damping));
    }

    /// <summary>The output error of <paramref name="model"/> against the reference (0 when identical), in-sample.</summary>
    public double Of(OnnxModel model)
    {
        using var scope = NewDisposeScope();
        return Compare(Readout(model, null) ?? Run(model, _data, _count, Output));
    }

    /// <summary>
    /// The held-out output error of a change fitted twice (algorithms.md §18, "Held out"): <paramref name="models"/> are
    /// [fitted on the even calibration samples, fitted on the odd]; each sample is judged by the model that did not see
    /// it, and where the output is a Gemm's its readout refit is fitted on that model's own fold too. One model is judged
    /// in-sample (<see cref="Of(OnnxModel)"/>).
    /// </summary>
    public double HeldOut(IReadOnlyList<OnnxModel> models)
    {
        _judged++;
        if (models.Count == 1 || _count < 2)
        {
            _inSample++;
            return Of(models[0]);
        }

        using var scope = NewDisposeScope();
        var odd = arange(_count, ScalarType.Int64).remainder(2).eq(1);
        var fittedOnEven = Readout(models[0], 0) ?? Run(models[0], _data, _count, Output);
        var fittedOnOdd = Readout(models[1], 1) ?? Run(models[1], _data, _count, Output);
        if (fittedOnEven.shape[0] != _count)
        {
            _inSample++;
            return Compare(fittedOnEven); // the output's first axis is not the samples: no folds to tell apart
        }

        var shape = new long[] { _count }.Concat(Enumerable.Repeat(1L, (int)fittedOnEven.dim() - 1)).ToArray();
        return Compare(where(odd.reshape(shape), fittedOnEven, fittedOnOdd));
    }

    private double Compare(Tensor output)
    {
        if (Kind == OutputKind.ClassScores)
        {
            return Math.Max(0, DistillationLoss.Kl(output.to_type(ScalarType.Float64), _reference, 1).item<double>());
        }

        return output.to_type(ScalarType.Float64).sub(_reference).square().sum().item<double>() / _reference.square().sum().clamp_min(1e-30).item<double>();
    }

    /// <summary>
    /// Where the output is a Gemm's (no transA, alpha = beta = 1, a constant weight): the output with that Gemm's weight
    /// and bias refitted by ridge least squares towards the reference, as the pruner refits the last layer after a cut
    /// upstream (§14): [W' | b'] = (z_ref ᵀ[x 1] + λ[W | b]) ([x 1]ᵀ[x 1] + λI)⁻¹, fitted on every sample or on those of
    /// <paramref name="fold"/> (sample i is in fold i mod 2) and applied to every sample.
    /// </summary>
    private Tensor? Readout(OnnxModel model, int? fold)
    {
        var graph = model.Graph;
        if (IsReadout(model, Output) is not { } gemm || graph.GetInitializer(gemm.Input[1]) is not { } weight)
        {
            return null;
        }

        var w = model.ToTorch(weight).to_type(ScalarType.Float64);
        w = gemm.Int("transB", 0) == 1 ? w : w.t();
        var bias = gemm.Input.Count > 2 && graph.GetInitializer(gemm.Input[2]) is { } b ? model.ToTorch(b).to_type(ScalarType.Float64).reshape(-1).broadcast_to(w.shape[0]) : zeros(w.shape[0], ScalarType.Float64);
        var x = Run(model, _data, _count, gemm.Input[0]).to_type(ScalarType.Float64);
        x = cat([x.reshape(x.shape[0], -1), ones(x.shape[0], 1, ScalarType.Float64)], 1);
        var target = _reference.reshape(x.shape[0], -1);
        var samples = fold is { } f ? arange(f, x.shape[0], 2, ScalarType.Int64) : null;
        var (xf, tf) = samples is null ? (x, target) : (x.index_select(0, samples), target.index_select(0, samples));
        var full = cat([w, bias.unsqueeze(1)], 1); // [out, in + 1]
        var h = xf.t().mm(xf).div(xf.shape[0]);
        var lambda = _ridge * h.diagonal().narrow(0, 0, w.shape[1]).mean().item<double>() + 1e-12;
        var a = h.add(eye(h.shape[0], dtype: ScalarType.Float64).mul(lambda));
        var rhs = xf.t().mm(tf).div(xf.shape[0]).add(full.t().mul(lambda));
        var refitted = linalg.solve(a, rhs); // [in + 1, out]
        return x.mm(refitted).to_type(ScalarType.Float32).reshape(_reference.shape);
    }

    /// <summary>The Gemm that computes <paramref name="output"/> from a constant weight as x·Wᵀ + b (or x·W + b), or null.</summary>
    private static Onnx.Proto.NodeProto? IsReadout(OnnxModel model, string output) =>
        model.Graph.GetProducer(output) is { OpType: "Gemm" } gemm && string.IsNullOrEmpty(gemm.Domain) && gemm.Int("transA", 0) == 0
        && gemm.Float("alpha", 1) == 1 && gemm.Float("beta", 1) == 1 && model.Graph.GetInitializer(gemm.Input[1]) is not null ? gemm : null;

    private static Tensor Run(OnnxModel model, CalibrationSet data, int count, string output)
    {
        using var runner = OrtModelRunner.Computing(model, [output]);
        var batch = runner.MaxBatch(Batch, data); // a model with a fixed batch, or inputs fed whole, runs fewer at a time
        var parts = new List<Tensor>();
        for (var start = 0; start < count; start += batch)
        {
            using var values = runner.RunBatch(data, start, Math.Min(batch, count - start), [output]);
            parts.Add(LayerHessian.ToTorch(values[0]));
        }

        var all = cat(parts, 0).DetachFromDisposeScope();
        parts.ForEach(p => p.Dispose());
        return all;
    }

    public void Dispose() => _reference.Dispose();
}
