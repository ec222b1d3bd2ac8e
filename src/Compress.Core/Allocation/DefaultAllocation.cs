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
        var allocator = Allocator.Measure(context, uses, ErrorDatabase.SparsityLevels(step.MaxLayerSparsity), _ => [32], prune);
        var total = allocator.Database.Sum(l => l.Parameters);
        var budget = (long)Math.Floor(total * (1 - step.Sparsity));
        var gamma = Environment.GetEnvironmentVariable("COMPRESS_ALLOC_GAMMA") is { } g ? double.Parse(g, System.Globalization.CultureInfo.InvariantCulture) : 1;
        var weighting = new ProxyWeighting(gamma);
        var problem = allocator.Problem(weighting, Allocator.Kept, budget);
        var solution = Allocator.Solve(problem, "dp");
        var words = $"{budget:N0} of {total:N0} weights kept ({1 - step.Sparsity:P1}), proxy: {weighting}";
        context.Allocation = allocator.Figures(problem, solution, "dp", words, []);
        context.Notes.Add($"prune/{step.Method}: per-layer sparsity allocated by dynamic programming over the error database ({words})");
        return solution.Choice.Select((k, i) => problem.Layers[i][k].Sparsity).ToArray();
    }
}
