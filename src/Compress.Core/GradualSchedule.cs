using System.Globalization;
using Compress.Spec;

namespace Compress.Core;

/// <summary>
/// Gradual pruning (Zhu &amp; Gupta, algorithms.md §1): a prune step with <c>"schedule": {"steps": N}</c> runs as N prunes
/// at the cubically rising sparsity s_t = s_f·(1 − (1 − t/N)³), t = 1…N, each followed by the finetune step after it with
/// its share of the steps (<see cref="Share"/>). Each stage's masks are chosen on the weights the previous distillation left (zeros stay smallest, so
/// the masks only grow). Every other step runs once, as written.
/// </summary>
public static class GradualSchedule
{
    /// <summary>The steps in the order they run, each with a note of its stage ("" for a step that runs once).</summary>
    public static IEnumerable<(SpecStep Step, string Stage)> Expand(IReadOnlyList<SpecStep> steps)
    {
        for (var i = 0; i < steps.Count; i++)
        {
            if (steps[i] is PruneStep { ScheduleSteps: > 0 } prune && i + 1 < steps.Count && steps[i + 1] is FinetuneStep finetune)
            {
                var n = prune.ScheduleSteps;
                for (var t = 1; t <= n; t++)
                {
                    var sparsity = Sparsity(prune.Sparsity, t, n);
                    var stage = string.Create(CultureInfo.InvariantCulture, $", stage {t}/{n} at {sparsity:P1}");
                    yield return (prune.Stage(sparsity), stage);
                    yield return (finetune.Stage(Share(t, n)), stage);
                }

                i++;
                continue;
            }

            yield return (steps[i], "");
        }
    }

    /// <summary>
    /// The share of the finetune step's steps that stage <paramref name="t"/> of <paramref name="n"/> takes: half for the
    /// last stage, at the final sparsity (the model that ships), the other half split evenly over the stages before.
    /// </summary>
    public static double Share(int t, int n) => t == n ? 0.5 : 0.5 / (n - 1);

    /// <summary>The sparsity of stage <paramref name="t"/> of <paramref name="n"/> towards <paramref name="final"/>, from dense.</summary>
    public static double Sparsity(double final, int t, int n) => final * (1 - Math.Pow(1 - t / (double)n, 3));
}
