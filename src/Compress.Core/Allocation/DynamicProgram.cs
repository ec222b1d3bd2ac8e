using System.Diagnostics;

namespace Compress.Core.Allocation;

/// <summary>
/// The exact solver (OBC / SPDY, algorithms.md §12): a knapsack over the cost axis cut into at most
/// <see cref="Buckets"/> units, each choice's cost rounded up to whole units so that every answer meets the budget
/// exactly; optimal up to that rounding. O(layers · choices · buckets).
/// </summary>
public static class DynamicProgram
{
    public const int Buckets = 10_000;

    public static AllocationSolution Solve(AllocationProblem problem)
    {
        var watch = Stopwatch.StartNew();
        if (!problem.IsFeasible)
        {
            throw new InvalidOperationException($"no allocation fits the budget of {problem.Budget:N0}: the cheapest costs {problem.MinimumCost:N0}");
        }

        var layers = problem.Layers;
        var unit = Math.Max(1.0, problem.Budget / (double)Buckets);
        var capacity = (int)Math.Floor(problem.Budget / unit);
        var units = layers.Select(l => l.Select(c => (int)Math.Min(capacity + 1L, (long)Math.Ceiling(c.Cost / unit - 1e-9))).ToArray()).ToArray();
        if (units.Sum(u => u.Min()) > capacity)
        {
            // Rounding up cost a sliver: fall back to exact units of the cheapest choices' granularity.
            unit = 1;
            capacity = (int)Math.Min(int.MaxValue - 1, problem.Budget);
            units = layers.Select(l => l.Select(c => (int)Math.Min(capacity + 1L, c.Cost)).ToArray()).ToArray();
        }

        // best[b]: least error of the layers so far at total units ≤ b; pick[l][b]: layer l's choice there.
        var best = new double[capacity + 1];
        var next = new double[capacity + 1];
        var pick = new int[layers.Count][];
        for (var l = 0; l < layers.Count; l++)
        {
            Array.Fill(next, double.PositiveInfinity);
            pick[l] = new int[capacity + 1];
            var choices = layers[l];
            for (var k = 0; k < choices.Count; k++)
            {
                var cost = units[l][k];
                var error = choices[k].Error;
                for (var b = cost; b <= capacity; b++)
                {
                    var value = best[b - cost] + error;
                    if (value < next[b])
                    {
                        next[b] = value;
                        pick[l][b] = k;
                    }
                }
            }

            (best, next) = (next, best);
        }

        var choice = new int[layers.Count];
        var at = capacity;
        for (var l = layers.Count - 1; l >= 0; l--)
        {
            choice[l] = pick[l][at];
            at -= units[l][choice[l]];
        }

        return new AllocationSolution(choice, problem.Objective(choice), problem.Cost(choice), watch.Elapsed);
    }
}
