using Compress.Core.Allocation;
using Xunit.Abstractions;

namespace Compress.Core.Tests.Allocation;

/// <summary>The two allocation solvers against brute force and against each other, on seeded random problems shaped like error databases.</summary>
public sealed class SolverTests(ITestOutputHelper output)
{
    /// <summary>Layers with convex-ish error curves: error rises as cost falls, each layer at its own scale.</summary>
    private static AllocationProblem Random(int layers, int choices, double budgetFraction, int seed)
    {
        var random = new Random(seed);
        var table = new List<IReadOnlyList<LayerChoice>>();
        long dense = 0;
        for (var l = 0; l < layers; l++)
        {
            var size = random.Next(1_000, 200_000);
            var scale = Math.Exp(random.NextDouble() * 6 - 3);
            dense += size;
            table.Add(Enumerable.Range(0, choices).Select(k =>
            {
                var sparsity = k / (double)choices;
                var cost = (long)Math.Round(size * (1 - sparsity));
                return new LayerChoice(sparsity, 32, cost, scale * Math.Pow(sparsity, 2 + random.NextDouble()) * (1 + 0.05 * random.NextDouble()));
            }).ToList());
        }

        return new AllocationProblem(table, (long)(dense * budgetFraction));
    }

    private static double BruteForce(AllocationProblem problem)
    {
        var best = double.PositiveInfinity;
        void Walk(int layer, long cost, double error)
        {
            if (cost > problem.Budget || error >= best)
            {
                return;
            }

            if (layer == problem.Layers.Count)
            {
                best = error;
                return;
            }

            foreach (var c in problem.Layers[layer])
            {
                Walk(layer + 1, cost + c.Cost, error + c.Error);
            }
        }

        Walk(0, 0, 0);
        return best;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void The_dynamic_program_finds_the_brute_force_optimum_within_the_budget(int seed)
    {
        var problem = Random(layers: 5, choices: 6, budgetFraction: 0.4, seed);
        var solution = DynamicProgram.Solve(problem);
        Assert.True(solution.Cost <= problem.Budget);
        var optimum = BruteForce(problem);
        // The cost axis is cut into 10,000 units rounded up: optimal up to that rounding (well under 1% here).
        Assert.InRange(solution.Objective, optimum, optimum * 1.01 + 1e-12);
        Assert.Equal(problem.Objective(solution.Choice), solution.Objective, 12);
    }

    [Fact]
    public void An_unreachable_budget_is_refused_by_both_solvers()
    {
        var problem = new AllocationProblem([[new LayerChoice(0, 32, 100, 0), new LayerChoice(0.5, 32, 50, 1)]], 40);
        Assert.False(problem.IsFeasible);
        Assert.Throws<InvalidOperationException>(() => DynamicProgram.Solve(problem));
        Assert.Throws<InvalidOperationException>(() => new QuboAnnealer().Solve(problem));
    }

    [Theory]
    [InlineData(4, 20, 0.1)]
    [InlineData(12, 24, 0.2)]
    [InlineData(22, 24, 0.3)]
    [InlineData(40, 12, 0.5)]
    public void Annealing_the_qubo_comes_within_one_percent_of_the_optimum_and_is_deterministic(int layers, int choices, double budget)
    {
        var problem = Random(layers, choices, budget, seed: layers);
        var exact = DynamicProgram.Solve(problem);
        var annealer = new QuboAnnealer();
        var annealed = annealer.Solve(problem);
        output.WriteLine($"{layers}×{choices}, budget {budget:P0}: DP {exact.Objective:0.######} ({exact.Time.TotalMilliseconds:0} ms), " +
            $"anneal {annealed.Objective:0.######} ({annealed.Time.TotalMilliseconds:0} ms, {annealer.Variables} variables, annealed state {annealer.Annealed.Objective:0.######}, feasible {annealer.Annealed.Feasible})");
        Assert.True(annealed.Cost <= problem.Budget);
        Assert.True(annealed.Objective <= exact.Objective * 1.01 + 1e-12, $"anneal {annealed.Objective} vs DP {exact.Objective}");
        Assert.Equal(annealed.Choice, new QuboAnnealer().Solve(problem).Choice);
    }
}
