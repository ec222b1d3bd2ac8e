using Compress.Core.Calibration;
using Compress.Core.Data;
using Compress.Core.Evaluation;
using Compress.Core.Fidelity;
using Compress.Core.Passes.SecondOrder;
using Compress.Core.Torch;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Passes.Finetune;

/// <summary>
/// What distillation trains on, made once per working copy (a gradual prune's stages share it): the inputs as tensors,
/// the original model's outputs on them (ONNX Runtime, from the source file), the labels if the data has them, and the
/// seeded split into training and held-out samples. For an output computed by Softmax the student is read before the
/// Softmax and the teacher's probabilities are taken as log-probabilities (the same class scores up to a constant).
/// </summary>
internal sealed class DistillationData : IDisposable
{
    /// <summary>At most this many held-out samples judge the steps: enough to rank states, cheap enough to check often.</summary>
    private const int MaxHoldout = 1024;

    private DistillationData(Dictionary<string, Tensor> inputs, Dictionary<string, Tensor> constants, Tensor teacher, Tensor? labels, string output,
        OutputKind kind, long[] train, long[] holdout, string source)
    {
        Inputs = inputs;
        Constants = constants;
        Teacher = teacher;
        Labels = labels;
        Output = output;
        Kind = kind;
        Train = train;
        Holdout = holdout;
        Source = source;
    }

    /// <summary>Per-sample inputs, [samples, …] each.</summary>
    public Dictionary<string, Tensor> Inputs { get; }

    /// <summary>Inputs fed whole with every batch.</summary>
    public Dictionary<string, Tensor> Constants { get; }

    /// <summary>The original model's output (logits where it ends in Softmax), [samples, …].</summary>
    public Tensor Teacher { get; }

    public Tensor? Labels { get; }

    /// <summary>The student's value distilled: the judged output, or the logits before its Softmax.</summary>
    public string Output { get; }

    public OutputKind Kind { get; }

    public long[] Train { get; }

    public long[] Holdout { get; }

    /// <summary>The data file, for notes.</summary>
    public string Source { get; }

    public static DistillationData Create(CompressionContext context, Compress.Spec.FinetuneStep step)
    {
        var data = context.Spec.Training is { } training ? CalibrationSet.Load(training, context.Model, context.Spec.File) : context.Calibration;
        var (judged, output) = Logits(context);

        context.Progress($"finetune: the original model's '{judged}' on {data.Count:N0} samples");
        var parts = new List<Tensor>();
        using (var runner = OrtModelRunner.FromFile(context.SourcePath ?? throw new InvalidOperationException("the source model's path is not known")))
        {
            runner.Run(data, 256, (_, _, values) => parts.Add(LayerHessian.ToTorch(values[judged])), [judged]);
        }

        var teacher = cat(parts, 0);
        parts.ForEach(p => p.Dispose());
        if (output != judged)
        {
            teacher = teacher.clamp_min(1e-12f).log();
        }

        var inputs = data.Inputs.ToDictionary(p => p.Key, p => p.Value.ToTorch(), StringComparer.Ordinal);
        var constants = data.Constants.ToDictionary(p => p.Key, p => p.Value.ToTorch(), StringComparer.Ordinal);
        return Split(inputs, constants, teacher, data.Labels, output, step, Path.GetFileName(data.Source));
    }

    /// <summary>
    /// The judged output (<c>data.evaluation.output</c>, else the model's first) and the value compared with it: the
    /// logits before it where a Softmax computes it (the same class scores, without the Softmax flattening them), else
    /// the output itself.
    /// </summary>
    public static (string Judged, string Compared) Logits(CompressionContext context)
    {
        var judged = context.Spec.Evaluation?.Output ?? context.Model.Proto.Graph.Output[0].Name;
        return (judged, context.Model.Graph.GetProducer(judged) is { OpType: "Softmax" } softmax && string.IsNullOrEmpty(softmax.Domain) ? softmax.Input[0] : judged);
    }

    /// <summary>
    /// For a format that runs its own original (TorchScript): the inputs <paramref name="x"/> under <paramref name="input"/>,
    /// the original's outputs <paramref name="teacher"/> on them, the labels if any, split as <see cref="Create"/> splits.
    /// </summary>
    public static DistillationData FromTensors(string input, Tensor x, Tensor teacher, long[]? labels, string output, Compress.Spec.FinetuneStep step, string source) =>
        Split(new Dictionary<string, Tensor>(StringComparer.Ordinal) { [input] = x }, new Dictionary<string, Tensor>(StringComparer.Ordinal), teacher, labels, output, step, source);

    /// <summary>The output's kind, the labels where they are class labels of every sample, and the seeded training/held-out split.</summary>
    private static DistillationData Split(Dictionary<string, Tensor> inputs, Dictionary<string, Tensor> constants, Tensor teacher, long[]? labels, string output,
        Compress.Spec.FinetuneStep step, string source)
    {
        var count = (int)teacher.shape[0];
        var kind = OutputKinds.Classify(teacher.shape, count, maskedSequence: false);
        var order = randperm(count, generator: new Generator((ulong)step.Seed)).data<long>().ToArray();
        var held = step.Holdout > 0 ? (int)Math.Min(MaxHoldout, Math.Max(1, Math.Round(step.Holdout * count))) : 0;
        if (held >= count)
        {
            held = 0;
        }

        // One label per sample: they serve where the scores hold one prediction per sample ([N, C]), not per position ([N, T, C]).
        var classLabels = labels is { } l && kind == OutputKind.ClassScores && teacher.dim() == 2 && l.Length == count ? tensor(l) : null;
        return new DistillationData(inputs, constants, teacher, classLabels, output, kind, order[held..], order[..held], source) { Seed = step.Seed, HoldoutShare = step.Holdout };
    }

    /// <summary>The seed of the split (a later finetune step with another seed or holdout share makes its own).</summary>
    public int Seed { get; private init; }

    /// <summary>The held-out share the split was made with.</summary>
    public double HoldoutShare { get; private init; }

    /// <summary>
    /// <paramref name="made"/> when its split is the one <paramref name="step"/> asks for (a gradual prune's stages share
    /// it); else <paramref name="made"/> disposed and the data made again by <paramref name="create"/>.
    /// </summary>
    public static DistillationData Reuse(DistillationData? made, Compress.Spec.FinetuneStep step, Func<DistillationData> create)
    {
        if (made is not null && step.Seed == made.Seed && step.Holdout == made.HoldoutShare)
        {
            return made;
        }

        made?.Dispose();
        return create();
    }

    /// <summary>The inputs of samples <paramref name="indices"/> (and the constant inputs).</summary>
    public Dictionary<string, Tensor> Batch(Tensor indices)
    {
        var batch = Inputs.ToDictionary(p => p.Key, p => p.Value.index_select(0, indices), StringComparer.Ordinal);
        foreach (var (name, value) in Constants)
        {
            batch[name] = value;
        }

        return batch;
    }

    public void Dispose()
    {
        foreach (var t in Inputs.Values.Concat(Constants.Values))
        {
            t.Dispose();
        }

        Teacher.Dispose();
        Labels?.Dispose();
    }
}
