using Compress.Spec;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Passes.Finetune;

/// <summary>
/// The distillation objective (algorithms.md §17), shared by every format's finetune: KL(softmax(t/T) ‖ softmax(s/T))·T²
/// over every prediction of class scores ([N, C] or [N, T, C]); MSE over the original output's mean square; or
/// 1 − cosine per sample — plus cross-entropy on labels where there are any.
/// </summary>
public static class DistillationLoss
{
    /// <param name="loss"><see cref="FinetuneStep.KlLoss"/>, <see cref="FinetuneStep.MseLoss"/> or <see cref="FinetuneStep.CosineLoss"/>.</param>
    /// <param name="scale">The original output's mean square (the MSE is divided by it).</param>
    /// <param name="labels">Class labels of the samples, or null.</param>
    public static Tensor Of(Tensor student, Tensor teacher, string loss, double temperature, double scale, Tensor? labels)
    {
        var value = loss switch
        {
            FinetuneStep.KlLoss => Kl(student, teacher, temperature),
            FinetuneStep.CosineLoss => 1 - nn.functional.cosine_similarity(student.reshape(student.shape[0], -1), teacher.reshape(teacher.shape[0], -1), 1).mean(),
            _ => (student - teacher).square().mean() / scale,
        };
        return labels is null ? value : value + nn.functional.cross_entropy(student.reshape(-1, student.shape[^1]), labels);
    }

    /// <summary>KL(softmax(t/T) ‖ softmax(s/T))·T², over every prediction ([N, C] or [N, T, C]).</summary>
    public static Tensor Kl(Tensor student, Tensor teacher, double temperature)
    {
        var classes = student.shape[^1];
        var s = (student.reshape(-1, classes) / temperature).log_softmax(1);
        var t = (teacher.reshape(-1, classes) / temperature).log_softmax(1);
        return (t.exp() * (t - s)).sum(1).mean() * (temperature * temperature);
    }
}
