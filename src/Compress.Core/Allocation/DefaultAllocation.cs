using Compress.Core.Onnx;
using Compress.Core.Passes;
using Compress.Core.Reports;
using Compress.Spec;

namespace Compress.Core.Allocation;

/// <summary>
/// <c>prune</c> with <c>scope: "global"</c> and a layer-wise data-aware method (obs, wanda): each layer's sparsity from
/// the error database by the exact dynamic program, under the step's budget of weights kept (Σ n_l(1 − s_l) ≤
/// (1 − s)·Σ n_l), instead of a global magnitude threshold's shares.
/// </summary>
public static class DefaultAllocation
{
    public static double[] PruneShares(CompressionContext context, PruneStep step, IReadOnlyList<WeightUse> uses, LayerPruner prune)
    {
        var allocator = Allocator.Measure(context, uses, ErrorDatabase.SparsityLevels(step.MaxLayerSparsity), _ => [32], prune, measureSensitivity: false);
        var total = allocator.Database.Sum(l => l.Parameters);
        var budget = (long)Math.Floor(total * (1 - step.Sparsity));
        var weighting = new ProxyWeighting(0); // measured best on our CNN; the traces are not taken (they cost minutes on a conv net)
        var problem = allocator.Problem(weighting, Allocator.Kept, budget);
        var solution = Allocator.Solve(problem, "dp");
        var words = $"{budget:N0} of {total:N0} weights kept ({1 - step.Sparsity:P1}), proxy: {weighting}";
        context.Allocation = allocator.Figures(problem, solution, "dp", words, []);
        context.Notes.Add($"prune/{step.Method}: per-layer sparsity allocated by dynamic programming over the error database ({words})");
        return Fill(problem, solution);
    }

    /// <summary>
    /// The chosen levels' sparsities, with the weights the discrete levels left of the budget given back to the layer
    /// whose next denser level saves the most error per weight (its sparsity between the two levels), so the step
    /// keeps exactly its budget.
    /// </summary>
    private static double[] Fill(AllocationProblem problem, AllocationSolution solution)
    {
        var sparsities = solution.Choice.Select((k, i) => problem.Layers[i][k].Sparsity).ToArray();
        var left = problem.Budget - solution.Cost;
        var (layer, rate, room) = (-1, 0.0, 0L);
        for (var l = 0; l < sparsities.Length; l++)
        {
            var now = problem.Layers[l][solution.Choice[l]];
            var denser = problem.Layers[l].Where(c => c.Cost > now.Cost).MinBy(c => c.Cost);
            if (denser is not null && (now.Error - denser.Error) / (denser.Cost - now.Cost) is var r && r > rate)
            {
                (layer, rate, room) = (l, r, denser.Cost - now.Cost);
            }
        }

        if (layer >= 0 && left > 0)
        {
            var now = problem.Layers[layer][solution.Choice[layer]];
            var kept = now.Cost + Math.Min(left, room);
            var weights = (double)problem.Layers[layer].Max(c => c.Cost); // the dense level keeps every weight
            sparsities[layer] = 1 - kept / weights;
        }

        return sparsities;
    }
}
