using System.Globalization;
using static System.FormattableString;
using Compress.Core.Diagnostics;
using Compress.Core.Execution;
using Compress.Core.Fidelity;
using Compress.Core.Torch;
using Compress.Spec;
using Compress.Spec.Methods;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Passes.Finetune;

/// <summary>
/// <c>finetune</c> with <c>distill</c> (algorithms.md §17): the working model, as the steps before it left it, trained
/// towards the original model's outputs on the calibration (or training) inputs through the TorchSharp executor —
/// KL(softmax(z_t/T) ‖ softmax(z_s/T))·T² on class scores, MSE (over the original output's mean square) or 1 − cosine on
/// features, plus cross-entropy where the data has labels. Pruned weights stay zero (masks fixed); quantized weights train
/// on their grids (<see cref="TrainingModel"/>). The learning rate decays by a cosine to zero; a seeded held-out share of
/// the samples is checked twenty times (a gradual prune's stage its share of them, at least four), and the best state seen (the starting one included) is the one written back, so
/// training never ships a model worse on the holdout than it started; after <c>patience</c> checks without improvement it
/// stops early. Deterministic on CPU: a seeded sample order, no dropout.
/// </summary>
[ImplementsMethod(DistillMethod.Name)]
public sealed class Distiller(FinetuneStep step) : ICompressionPass
{
    private const int Checks = 20;

    public string Name => $"finetune/{step.Method}";

    public void Apply(CompressionContext context)
    {
        TorchRuntime.EnsureLoaded();
        var data = context.Distillation ??= DistillationData.Create(context, step);
        var (model, weights) = TrainingModel.Build(context, step);
        if (weights.Count == 0)
        {
            throw CompressException.Error(DiagnosticCodes.FinetuneNothingToTrain,
                $"'finetune' (spec line {step.Line}) found no weight to train among {string.Join(", ", step.OpTypes)} nodes" +
                (step.Include.Count + step.Exclude.Count > 0 ? " matching its include/exclude" : ""), context.Spec.File, step.Line, step.Column);
        }

        try
        {
            using var graph = new TorchGraph(model);
            Train(context, data, graph, weights);
        }
        finally
        {
            weights.ForEach(w => w.Dispose());
        }
    }

    private void Train(CompressionContext context, DistillationData data, TorchGraph graph, List<TrainableWeight> weights)
    {
        var steps = Math.Max(1, (int)Math.Round(step.Steps * step.Share));
        var batch = (int)Math.Min(step.BatchSize, data.Train.Length);
        var loss = step.Loss == FinetuneStep.AutoLoss ? data.Kind == OutputKind.ClassScores ? FinetuneStep.KlLoss : FinetuneStep.MseLoss : step.Loss;
        if (loss == FinetuneStep.KlLoss && data.Kind != OutputKind.ClassScores)
        {
            throw CompressException.Error(SpecCodes.Inconsistent,
                $"finetune.loss 'kl' compares class scores, but output '{data.Output}' holds features (shape [{string.Join(", ", data.Teacher.shape)}]): use 'mse' or 'cosine'",
                context.Spec.File, step.Line, step.Column);
        }

        var parameters = weights.Select(w => w.Shadow).ToList();
        using var optimizer = step.Optimizer == "sgd"
            ? (optim.Optimizer)optim.SGD(parameters, step.LearningRate, momentum: 0.9)
            : optim.Adam(parameters, step.LearningRate);
        var scale = data.Kind == OutputKind.Features ? data.Teacher.square().mean().ToDouble() : 1;
        var train = tensor(data.Train);
        var order = new Generator((ulong)step.Seed + 1);
        var permutation = train.index_select(0, randperm(train.shape[0], generator: order));
        var position = 0;
        var every = Math.Max(1, steps / Math.Max(4, (int)Math.Round(Checks * step.Share))); // a stage of a gradual prune checks its share
        var judging = data.Holdout.Length > 0; // without a holdout every step is kept, the last state written back
        var (best, bestStep) = (judging ? Holdout(data, graph, weights, loss, scale) : Judged.None, 0);
        var first = best;
        var snapshot = weights.Select(w => w.Shadow.detach().clone()).ToList();
        var stale = 0;
        var stopped = steps;
        context.Progress($"finetune: {steps:N0} steps of {batch} samples, {loss} loss{(data.Labels is null ? "" : " + cross-entropy on labels")}, " +
            $"{parameters.Sum(p => p.numel()):N0} weights in {weights.Count} tensors; holdout {Describe(best)}");
        for (var t = 0; t < steps; t++)
        {
            using (var scope = NewDisposeScope())
            {
                if (position + batch > permutation.shape[0])
                {
                    permutation.Dispose();
                    permutation = train.index_select(0, randperm(train.shape[0], generator: order)).DetachFromDisposeScope();
                    position = 0;
                }

                var indices = permutation.narrow(0, position, batch);
                position += batch;
                foreach (var group in optimizer.ParamGroups)
                {
                    group.LearningRate = step.LearningRate * 0.5 * (1 + Math.Cos(Math.PI * t / steps));
                }

                optimizer.zero_grad();
                var value = Loss(data, Student(data, graph, weights, indices), indices, loss, scale, withLabels: true);
                value.backward();
                optimizer.step();
                using (no_grad())
                {
                    foreach (var w in weights.Where(w => w.Mask is not null))
                    {
                        w.Shadow.mul_(w.Mask!); // momentum would otherwise revive pruned weights
                    }
                }
            }

            if ((t + 1) % 50 == 0)
            {
                // Some handles of each step (the optimiser's) are released only by their finalizers: without a collection
                // now and then, native memory grows by the weights' size every few steps (int4 MLP, 6,000 steps: 2.9 GB).
                GC.Collect();
                GC.WaitForPendingFinalizers();
            }

            if (!judging)
            {
                bestStep = t + 1;
            }
            else if ((t + 1) % every == 0 || t + 1 == steps)
            {
                var now = Holdout(data, graph, weights, loss, scale);
                context.Progress($"finetune: step {t + 1:N0}/{steps:N0}, holdout {Describe(now)}");
                if (now.Loss < best.Loss)
                {
                    (best, bestStep, stale) = (now, t + 1, 0);
                    for (var i = 0; i < weights.Count; i++)
                    {
                        snapshot[i].copy_(weights[i].Shadow.detach());
                    }
                }
                else if (++stale >= step.Patience)
                {
                    stopped = t + 1;
                    break;
                }
            }
        }

        using (no_grad())
        {
            for (var i = 0; i < weights.Count; i++)
            {
                weights[i].WriteBack(judging ? snapshot[i] : weights[i].Shadow.detach());
            }
        }

        snapshot.ForEach(s => s.Dispose());
        permutation.Dispose();
        train.Dispose();
        var outcome = !judging ? ""
            : bestStep == 0 ? " (no step improved it: the weights are as the steps before left them)"
            : stopped < steps ? Invariant($" (best at step {bestStep:N0}, stopped early at {stopped:N0} of {steps:N0})")
            : Invariant($" (best at step {bestStep:N0} of {steps:N0})");
        context.Notes.Add(Invariant($"finetune: distilled the original model's '{data.Output}' ({loss}) on {data.Train.Length:N0} samples of {data.Source}") +
            (data.Labels is null ? "" : " with their labels") + Invariant($", {weights.Count} weight tensors; holdout of {data.Holdout.Length:N0}: {Describe(first)} → {Describe(best)}{outcome}"));
    }

    /// <summary>The student's output on samples <paramref name="indices"/>, the shadows set into the graph as they are.</summary>
    private static Tensor Student(DistillationData data, TorchGraph graph, List<TrainableWeight> weights, Tensor indices)
    {
        foreach (var w in weights)
        {
            graph.SetWeight(w.Value, w.Forward());
        }

        return graph.Run(data.Batch(indices), [data.Output])[data.Output];
    }

    private Tensor Loss(DistillationData data, Tensor student, Tensor indices, string loss, double scale, bool withLabels) =>
        DistillationLoss.Of(student, data.Teacher.index_select(0, indices), loss, step.Temperature, scale, withLabels ? data.Labels?.index_select(0, indices) : null);

    /// <summary>The loss (and, for class scores, top-1 agreement with the original) on the held-out samples.</summary>
    private Judged Holdout(DistillationData data, TorchGraph graph, List<TrainableWeight> weights, string loss, double scale)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        double total = 0;
        long agree = 0, predictions = 0;
        for (var start = 0; start < data.Holdout.Length; start += 256)
        {
            var indices = tensor(data.Holdout[start..Math.Min(data.Holdout.Length, start + 256)]);
            var student = Student(data, graph, weights, indices);
            total += Loss(data, student, indices, loss, scale, withLabels: false).ToDouble() * indices.shape[0];
            if (data.Kind == OutputKind.ClassScores)
            {
                var teacher = data.Teacher.index_select(0, indices);
                agree += student.argmax(-1).eq(teacher.argmax(-1)).sum().ToInt64();
                predictions += student.numel() / student.shape[^1];
            }
        }

        return new Judged(total / data.Holdout.Length, predictions == 0 ? null : agree / (double)predictions);
    }

    private static string Describe(Judged judged) => double.IsNaN(judged.Loss) ? "none held out"
        : string.Create(CultureInfo.InvariantCulture, $"loss {judged.Loss:0.####}{(judged.Agreement is { } a ? $", agreement {a:P2}" : "")}");

    private readonly record struct Judged(double Loss, double? Agreement)
    {
        public static Judged None => new(double.NaN, null);
    }
}
