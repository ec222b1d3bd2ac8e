using Compress.Core.Diagnostics;
using Compress.Core.Execution;
using Compress.Core.Torch;
using Compress.Spec;
using Compress.Spec.Methods;
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
/// stops early (the loop is <see cref="DistillationLoop"/>, shared with TorchScript's). Deterministic on CPU: a seeded sample order, no dropout.
/// </summary>
[ImplementsMethod(DistillMethod.Name)]
public sealed class Distiller(FinetuneStep step) : ICompressionPass
{
    public string Name => $"finetune/{step.Method}";

    public void Apply(CompressionContext context)
    {
        TorchRuntime.EnsureLoaded();
        var data = context.Distillation = DistillationData.Reuse(context.Distillation, step, () => DistillationData.Create(context, step));
        var (model, weights) = TrainingModel.Build(context, step);
        if (weights.Count == 0)
        {
            throw DistillationLoop.NothingToTrain(step, context.Spec.File, $"{string.Join(", ", step.OpTypes)} nodes");
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

    private void Train(CompressionContext context, DistillationData data, TorchGraph graph, List<TrainableWeight> weights) =>
        context.Notes.Add(DistillationLoop.Train(step, context.Spec.File, data, weights, new DistillationStudent(
            indices => Student(data, graph, weights, indices), loss => loss.backward()), context.Progress));

    /// <summary>The student's output on samples <paramref name="indices"/>, the shadows set into the graph as they are.</summary>
    private static Tensor Student(DistillationData data, TorchGraph graph, List<TrainableWeight> weights, Tensor indices)
    {
        foreach (var w in weights)
        {
            graph.SetWeight(w.Value, w.Forward());
        }

        return graph.Run(data.Batch(indices), [data.Output])[data.Output];
    }
}
