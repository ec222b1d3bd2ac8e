using System.Globalization;
using static System.FormattableString;
using Compress.Core.Diagnostics;
using Compress.Core.Fidelity;
using Compress.Spec;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Passes.Finetune;

/// <summary>
/// How a format's student is run and differentiated in <see cref="DistillationLoop"/>: its output on samples (the
/// shadows as they are), and the gradients of a loss on that output carried into the shadows' <c>grad</c>.
/// </summary>
/// <param name="Run">The student's output on the samples of an index tensor.</param>
/// <param name="Backward">Accumulates d loss / d shadow into every trained shadow's gradient.</param>
internal sealed record DistillationStudent(Func<Tensor, Tensor> Run, Action<Tensor> Backward);

/// <summary>
/// The training loop every format's <c>finetune</c> shares (algorithms.md §17): Adam or SGD on the shadows, the learning
/// rate decayed by a cosine to zero, a seeded sample order, the pruned positions held at zero after each optimiser step,
/// a held-out share checked twenty times (a gradual prune's stage its share of them, at least four) with the best state
/// seen (the starting one included) written back, and an early stop after <c>patience</c> checks without improvement.
/// </summary>
internal static class DistillationLoop
{
    private const int Checks = 20;

    /// <summary>CMP0070 at the step: it selects no weight among <paramref name="among"/>.</summary>
    public static CompressException NothingToTrain(FinetuneStep step, string specFile, string among) =>
        CompressException.Error(DiagnosticCodes.FinetuneNothingToTrain,
            $"'finetune' (spec line {step.Line}) found no weight to train among {among}" +
            (step.Include.Count + step.Exclude.Count > 0 ? " matching its include/exclude" : ""), specFile, step.Line, step.Column);

    /// <summary>Trains <paramref name="weights"/>, writes the best state back, and returns the run's note.</summary>
    public static string Train(FinetuneStep step, string specFile, DistillationData data, List<TrainableWeight> weights, DistillationStudent student,
        Action<string> progress)
    {
        var steps = Math.Max(1, (int)Math.Round(step.Steps * step.Share));
        var batch = (int)Math.Min(step.BatchSize, data.Train.Length);
        var loss = step.Loss == FinetuneStep.AutoLoss ? data.Kind == OutputKind.ClassScores ? FinetuneStep.KlLoss : FinetuneStep.MseLoss : step.Loss;
        if (loss == FinetuneStep.KlLoss && data.Kind != OutputKind.ClassScores)
        {
            throw CompressException.Error(SpecCodes.Inconsistent,
                $"finetune.loss 'kl' compares class scores, but output '{data.Output}' holds features (shape [{string.Join(", ", data.Teacher.shape)}]): use 'mse' or 'cosine'",
                specFile, step.Line, step.Column);
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
        var (best, bestStep) = (judging ? Holdout(step, data, student, loss, scale) : Judged.None, 0);
        var first = best;
        var snapshot = weights.Select(w => w.Shadow.detach().clone()).ToList();
        var stale = 0;
        var stopped = steps;
        progress($"finetune: {steps:N0} steps of {batch} samples, {loss} loss{(data.Labels is null ? "" : " + cross-entropy on labels")}, " +
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
                student.Backward(Loss(step, data, student.Run(indices), indices, loss, scale, withLabels: true));
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
                var now = Holdout(step, data, student, loss, scale);
                progress($"finetune: step {t + 1:N0}/{steps:N0}, holdout {Describe(now)}");
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
        return Invariant($"finetune: distilled the original model's '{data.Output}' ({loss}) on {data.Train.Length:N0} samples of {data.Source}") +
            (data.Labels is null ? "" : " with their labels") + Invariant($", {weights.Count} weight tensors; holdout of {data.Holdout.Length:N0}: {Describe(first)} → {Describe(best)}{outcome}");
    }

    private static Tensor Loss(FinetuneStep step, DistillationData data, Tensor student, Tensor indices, string loss, double scale, bool withLabels) =>
        DistillationLoss.Of(student, data.Teacher.index_select(0, indices), loss, step.Temperature, scale, withLabels ? data.Labels?.index_select(0, indices) : null);

    /// <summary>The loss (and, for class scores, top-1 agreement with the original) on the held-out samples.</summary>
    private static Judged Holdout(FinetuneStep step, DistillationData data, DistillationStudent student, string loss, double scale)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        double total = 0;
        long agree = 0, predictions = 0;
        for (var start = 0; start < data.Holdout.Length; start += 256)
        {
            var indices = tensor(data.Holdout[start..Math.Min(data.Holdout.Length, start + 256)]);
            var output = student.Run(indices);
            total += Loss(step, data, output, indices, loss, scale, withLabels: false).ToDouble() * indices.shape[0];
            if (data.Kind == OutputKind.ClassScores)
            {
                var teacher = data.Teacher.index_select(0, indices);
                agree += output.argmax(-1).eq(teacher.argmax(-1)).sum().ToInt64();
                predictions += output.numel() / output.shape[^1];
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
