using System.Diagnostics;

namespace Compress.Core.Allocation;

/// <summary>
/// The allocation as a QUBO (the adiabatic-quantum-computing seed's formulation, algorithms.md §6), solved classically by
/// simulated annealing. Binary x_{l,k} = 1 when layer l takes choice k, and S slack bits σ for the unused part of the
/// budget; with errors e scaled to sum to about one and costs c in budgets,
/// <code>E = Σ e_{l,k} x_{l,k} + A Σ_l (Σ_k x_{l,k} − 1)² + P (Σ c_{l,k} x_{l,k} + σ − 1)²</code>,
/// expanded into linear terms h and couplings J. The anneal runs Metropolis moves over a geometric temperature
/// schedule — single-bit flips of any variable and, within a layer, a pair flip that moves its one-hot bit (both
/// judged by the QUBO's own ΔE) — from several seeded starts. The best state is decoded (one choice per layer), repaired
/// to the budget if the quadratic penalty let it overshoot, and polished by single-layer moves that lower the error
/// within the budget; the figures keep the annealed state's own objective apart.
/// </summary>
public sealed class QuboAnnealer
{
    private const int SlackBits = 12;

    public int Restarts { get; init; } = 8;

    public int Sweeps { get; init; } = 600;

    public int Seed { get; init; } = 1234;

    /// <summary>The QUBO's variables (choices plus slack bits) of the last problem solved.</summary>
    public int Variables { get; private set; }

    /// <summary>The decoded annealed state's objective and whether it met the budget, before repair and polish.</summary>
    public (double Objective, bool Feasible) Annealed { get; private set; }

    public AllocationSolution Solve(AllocationProblem problem)
    {
        var watch = Stopwatch.StartNew();
        if (!problem.IsFeasible)
        {
            throw new InvalidOperationException($"no allocation fits the budget of {problem.Budget:N0}: the cheapest costs {problem.MinimumCost:N0}");
        }

        var qubo = Qubo.Build(problem, SlackBits);
        Variables = qubo.Count;
        int[]? best = null;
        var bestEnergy = double.PositiveInfinity;
        for (var restart = 0; restart < Restarts; restart++)
        {
            var (state, energy) = Anneal(qubo, new Random(Seed + restart));
            if (energy < bestEnergy)
            {
                (best, bestEnergy) = (state, energy);
            }
        }

        var choice = qubo.Decode(best!);
        Annealed = (problem.Objective(choice), problem.Cost(choice) <= problem.Budget);
        Repair(problem, choice);
        Polish(problem, choice);
        return new AllocationSolution(choice, problem.Objective(choice), problem.Cost(choice), watch.Elapsed);
    }

    private (int[] State, double Energy) Anneal(Qubo q, Random random)
    {
        var n = q.Count;
        var x = new int[n];
        // Start one-hot at each layer's cheapest choice, slack empty: a state the one-hot penalty does not charge.
        foreach (var layer in q.LayerVariables)
        {
            x[layer.OrderBy(v => q.Cost[v]).First()] = 1;
        }

        var field = new double[n];
        for (var i = 0; i < n; i++)
        {
            field[i] = q.Linear[i];
        }

        for (var i = 0; i < n; i++)
        {
            if (x[i] == 1)
            {
                AddCoupling(q, field, i, 1);
            }
        }

        var energy = q.Energy(x);
        var bestState = (int[])x.Clone();
        var bestEnergy = energy;
        var t0 = q.Temperature;
        var t1 = t0 * 1e-5;
        var moves = Sweeps * n;
        var active = q.LayerVariables.Select(l => l.First(v => x[v] == 1)).ToArray();
        for (var move = 0; move < moves; move++)
        {
            var temperature = t0 * Math.Pow(t1 / t0, move / (double)moves);
            if (random.NextDouble() < 0.7)
            {
                // Pair flip inside one layer: its set bit off, another of its bits on.
                var l = random.Next(q.LayerVariables.Length);
                var variables = q.LayerVariables[l];
                var on = variables[random.Next(variables.Length)];
                var off = active[l];
                if (on == off || x[off] == 0 || x[on] == 1)
                {
                    continue;
                }

                var delta = -field[off] + field[on] - q.Coupling(off, on);
                if (Accept(delta, temperature, random))
                {
                    x[off] = 0;
                    AddCoupling(q, field, off, -1);
                    x[on] = 1;
                    AddCoupling(q, field, on, 1);
                    active[l] = on;
                    energy += delta;
                }
            }
            else
            {
                var i = random.Next(n);
                var delta = (1 - 2 * x[i]) * field[i];
                if (Accept(delta, temperature, random))
                {
                    x[i] ^= 1;
                    AddCoupling(q, field, i, x[i] == 1 ? 1 : -1);
                    energy += delta;
                    var l = q.LayerOf[i];
                    if (l >= 0 && x[i] == 1)
                    {
                        active[l] = i;
                    }
                    else if (l >= 0 && active[l] == i)
                    {
                        active[l] = q.LayerVariables[l].FirstOrDefault(v => x[v] == 1, i);
                    }
                }
            }

            if (energy < bestEnergy - 1e-12)
            {
                bestEnergy = energy;
                Array.Copy(x, bestState, n);
            }
        }

        return (bestState, bestEnergy);
    }

    private static bool Accept(double delta, double temperature, Random random) =>
        delta <= 0 || random.NextDouble() < Math.Exp(-delta / temperature);

    private static void AddCoupling(Qubo q, double[] field, int i, int sign)
    {
        var row = q.Couplings.AsSpan(i * q.Count, q.Count);
        for (var j = 0; j < field.Length; j++)
        {
            field[j] += sign * row[j];
        }
    }

    /// <summary>While over budget, moves the layer whose cheaper choice costs the least error per byte saved.</summary>
    private static void Repair(AllocationProblem problem, int[] choice)
    {
        var cost = problem.Cost(choice);
        while (cost > problem.Budget)
        {
            var (layer, to, rate) = (-1, -1, double.PositiveInfinity);
            for (var l = 0; l < choice.Length; l++)
            {
                var now = problem.Layers[l][choice[l]];
                for (var k = 0; k < problem.Layers[l].Count; k++)
                {
                    var option = problem.Layers[l][k];
                    if (option.Cost < now.Cost && (option.Error - now.Error) / (now.Cost - option.Cost) is var r && r < rate)
                    {
                        (layer, to, rate) = (l, k, r);
                    }
                }
            }

            cost += problem.Layers[layer][to].Cost - problem.Layers[layer][choice[layer]].Cost;
            choice[layer] = to;
        }
    }

    /// <summary>Steepest single-layer moves that lower the error and keep the budget, until none is left.</summary>
    private static void Polish(AllocationProblem problem, int[] choice)
    {
        var cost = problem.Cost(choice);
        while (true)
        {
            var (layer, to, gain) = (-1, -1, 1e-15);
            for (var l = 0; l < choice.Length; l++)
            {
                var now = problem.Layers[l][choice[l]];
                for (var k = 0; k < problem.Layers[l].Count; k++)
                {
                    var option = problem.Layers[l][k];
                    if (cost - now.Cost + option.Cost <= problem.Budget && now.Error - option.Error > gain)
                    {
                        (layer, to, gain) = (l, k, now.Error - option.Error);
                    }
                }
            }

            if (layer < 0)
            {
                return;
            }

            cost += problem.Layers[layer][to].Cost - problem.Layers[layer][choice[layer]].Cost;
            choice[layer] = to;
        }
    }

    /// <summary>The expanded QUBO: E(x) = Σ h_i x_i + Σ_{i&lt;j} J_ij x_i x_j + constant, J stored full and symmetric.</summary>
    private sealed class Qubo
    {
        public required int Count { get; init; }

        public required double[] Linear { get; init; }

        public required double[] Couplings { get; init; }

        public required double[] Cost { get; init; }

        public required int[][] LayerVariables { get; init; }

        /// <summary>Each variable's layer, −1 for a slack bit.</summary>
        public required int[] LayerOf { get; init; }

        public required double Temperature { get; init; }

        public double Coupling(int i, int j) => Couplings[i * Count + j];

        public double Energy(int[] x)
        {
            var e = 0.0;
            for (var i = 0; i < Count; i++)
            {
                if (x[i] == 0)
                {
                    continue;
                }

                e += Linear[i];
                for (var j = i + 1; j < Count; j++)
                {
                    e += x[j] * Couplings[i * Count + j];
                }
            }

            return e;
        }

        /// <summary>One choice per layer: its set bit, the least-error one of several, or its cheapest when none is set.</summary>
        public int[] Decode(int[] x) => LayerVariables.Select(vars =>
        {
            var set = vars.Where(v => x[v] == 1).ToList();
            var chosen = set.Count == 0 ? vars.OrderBy(v => Cost[v]).First() : set.OrderBy(v => Linear[v]).First();
            return Array.IndexOf(vars, chosen);
        }).ToArray();

        public static Qubo Build(AllocationProblem problem, int slackBits)
        {
            var layers = problem.Layers;
            var count = layers.Sum(l => l.Count) + slackBits;
            var linear = new double[count];
            var couplings = new double[count * count];
            var cost = new double[count];
            var layerOf = new int[count];
            var errors = new double[count];
            var layerVariables = new int[layers.Count][];
            var v = 0;
            for (var l = 0; l < layers.Count; l++)
            {
                layerVariables[l] = new int[layers[l].Count];
                for (var k = 0; k < layers[l].Count; k++, v++)
                {
                    layerVariables[l][k] = v;
                    layerOf[v] = l;
                    cost[v] = layers[l][k].Cost / (double)problem.Budget;
                    errors[v] = layers[l][k].Error;
                }
            }

            for (var s = 0; s < slackBits; s++, v++)
            {
                layerOf[v] = -1;
                cost[v] = (1L << s) / (double)((1L << slackBits) - 1);
            }

            // Errors scaled so that the spread of every layer's choices sums to one.
            var spread = layers.Sum(l => l.Max(c => c.Error) - l.Min(c => c.Error));
            var scale = spread > 0 ? 1 / spread : 1;
            // The steepest error saved per budget spent between any two choices of a layer bounds the Lagrange
            // multiplier of the budget; P a hundred times that keeps an overshoot of the budget under about 0.5%.
            var slope = 1e-9;
            foreach (var vars in layerVariables)
            {
                foreach (var a in vars)
                {
                    foreach (var b in vars)
                    {
                        if (cost[b] > cost[a] && errors[a] > errors[b])
                        {
                            slope = Math.Max(slope, (errors[a] - errors[b]) * scale / (cost[b] - cost[a]));
                        }
                    }
                }
            }

            var budgetPenalty = 100 * slope;
            var oneHot = 2 * (1 + budgetPenalty * cost.Max() * cost.Max() * 4);
            for (var i = 0; i < count; i++)
            {
                linear[i] = (layerOf[i] >= 0 ? errors[i] * scale - oneHot : 0) + budgetPenalty * (cost[i] * cost[i] - 2 * cost[i]);
                for (var j = i + 1; j < count; j++)
                {
                    var coupling = 2 * budgetPenalty * cost[i] * cost[j] + (layerOf[i] >= 0 && layerOf[i] == layerOf[j] ? 2 * oneHot : 0);
                    couplings[i * count + j] = couplings[j * count + i] = coupling;
                }
            }

            // The starting temperature: a move across the typical layer's choices is accepted about half the time.
            var typical = layers.Average(l => l.Max(c => c.Error) - l.Min(c => c.Error)) * scale;
            return new Qubo
            {
                Count = count, Linear = linear, Couplings = couplings, Cost = cost, LayerVariables = layerVariables, LayerOf = layerOf,
                Temperature = Math.Max(typical, 1e-6) / Math.Log(2),
            };
        }
    }
}
