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
        // Start one-hot at a random choice per layer, slack empty: a state the one-hot penalty does not charge.
        foreach (var layer in q.LayerVariables)
        {
            x[layer[random.Next(layer.Length)]] = 1;
        }

        var field = new double[n];
        Array.Copy(q.Linear, field, n);
        for (var i = 0; i < n; i++)
        {
            if (x[i] == 1)
            {
                AddCoupling(q, field, i, 1);
            }
        }

        var active = q.LayerVariables.Select(l => l.First(v => x[v] == 1)).ToArray();
        // The starting temperature: the median |ΔE| of proposals from the starting state.
        var sampled = Enumerable.Range(0, 400).Select(_ => Math.Abs(Propose(q, x, field, active, random).Delta)).Where(d => d > 0).Order().ToList();
        var t0 = sampled.Count == 0 ? 1 : sampled[sampled.Count / 2]; // the median: a few slack flips' huge ΔE would set it far too hot
        var t1 = t0 * 1e-4;
        var energy = q.Energy(x);
        var bestState = (int[])x.Clone();
        var bestEnergy = energy;
        var moves = Sweeps * n;
        for (var move = 0; move < moves; move++)
        {
            var temperature = t0 * Math.Pow(t1 / t0, move / (double)moves);
            var (delta, off, on) = Propose(q, x, field, active, random);
            if (off < 0 && on < 0 || !Accept(delta, temperature, random))
            {
                continue;
            }

            foreach (var i in new[] { off, on })
            {
                if (i < 0)
                {
                    continue;
                }

                x[i] ^= 1;
                AddCoupling(q, field, i, x[i] == 1 ? 1 : -1);
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

            energy += delta;
            if (energy < bestEnergy - 1e-12)
            {
                bestEnergy = energy;
                Array.Copy(x, bestState, n);
            }
        }

        return (bestState, bestEnergy);
    }

    /// <summary>
    /// A move and its ΔE under the QUBO: most often a pair flip inside one layer (its set bit off, a neighbouring choice
    /// in cost order or any other choice on), else a single-bit flip of any variable (slack bits included).
    /// </summary>
    private static (double Delta, int Off, int On) Propose(Qubo q, int[] x, double[] field, int[] active, Random random)
    {
        if (random.NextDouble() < 0.75)
        {
            var l = random.Next(q.LayerVariables.Length);
            var variables = q.LayerVariables[l];
            var off = active[l];
            if (x[off] == 0)
            {
                return (0, -1, -1);
            }

            var at = Array.IndexOf(variables, off);
            var to = random.NextDouble() < 0.7 ? at + (random.Next(2) == 0 ? -1 : 1) * (1 + random.Next(2)) : random.Next(variables.Length);
            if (to < 0 || to >= variables.Length || to == at || x[variables[to]] == 1)
            {
                return (0, -1, -1);
            }

            var on = variables[to];
            return (-field[off] + field[on] - q.Coupling(off, on), off, on);
        }

        var i = random.Next(q.Count);
        return ((1 - 2 * x[i]) * field[i], i, -1);
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

    /// <summary>
    /// Steepest moves that lower the error and keep the budget — one layer to another choice, or two layers at once
    /// (one cheaper, one dearer: the exchange a budget-tight state needs) — until none is left.
    /// </summary>
    private static void Polish(AllocationProblem problem, int[] choice)
    {
        var layers = problem.Layers;
        var cost = problem.Cost(choice);
        for (var iteration = 0; iteration < 10_000; iteration++)
        {
            var (a, ka, b, kb, gain) = (-1, -1, -1, -1, 1e-15);
            for (var l = 0; l < choice.Length; l++)
            {
                var now = layers[l][choice[l]];
                for (var k = 0; k < layers[l].Count; k++)
                {
                    var option = layers[l][k];
                    var dCost = option.Cost - now.Cost;
                    var dError = now.Error - option.Error;
                    if (cost + dCost <= problem.Budget && dError > gain)
                    {
                        (a, ka, b, kb, gain) = (l, k, -1, -1, dError);
                    }

                    if (dCost <= 0 || dError <= 0)
                    {
                        continue;
                    }

                    // Pay for the dearer choice with another layer's cheaper one.
                    for (var m = 0; m < choice.Length; m++)
                    {
                        if (m == l)
                        {
                            continue;
                        }

                        var other = layers[m][choice[m]];
                        foreach (var cheaper in layers[m])
                        {
                            if (cheaper.Cost < other.Cost && cost + dCost + cheaper.Cost - other.Cost <= problem.Budget
                                && dError - (cheaper.Error - other.Error) is var net && net > gain)
                            {
                                (a, ka, b, kb, gain) = (l, k, m, IndexIn(layers[m], cheaper), net);
                            }
                        }
                    }
                }
            }

            if (a < 0)
            {
                return;
            }

            cost += layers[a][ka].Cost - layers[a][choice[a]].Cost;
            choice[a] = ka;
            if (b >= 0)
            {
                cost += layers[b][kb].Cost - layers[b][choice[b]].Cost;
                choice[b] = kb;
            }
        }
    }

    private static int IndexIn(IReadOnlyList<LayerChoice> choices, LayerChoice choice)
    {
        for (var k = 0; k < choices.Count; k++)
        {
            if (ReferenceEquals(choices[k], choice))
            {
                return k;
            }
        }

        return -1;
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
                    layerVariables[l][k] = v; // choice k of the layer (the problem lists a layer's choices; neighbours in the list are proposed most)
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
            // P from the budget's Lagrange multiplier λ (error saved per budget spent at the relaxation's optimum): an
            // overshoot δ of the budget saves about λδ and costs Pδ², so P = 200λ keeps it near ¼%, which the repair takes back.
            var lambda = Lagrange(layerVariables, errors, cost, scale);
            var budgetPenalty = 200 * Math.Max(lambda, 1e-6);
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

            return new Qubo { Count = count, Linear = linear, Couplings = couplings, Cost = cost, LayerVariables = layerVariables, LayerOf = layerOf };
        }

        /// <summary>λ at which choosing each layer's min of e + λc independently just meets the budget (bisection; costs in budgets).</summary>
        private static double Lagrange(int[][] layers, double[] errors, double[] cost, double scale)
        {
            double Spent(double lambda) => layers.Sum(vars => cost[vars.MinBy(v => errors[v] * scale + lambda * cost[v])]);
            double lo = 0, hi = 1;
            while (Spent(hi) > 1 && hi < 1e12)
            {
                hi *= 4;
            }

            for (var i = 0; i < 60; i++)
            {
                var mid = (lo + hi) / 2;
                (lo, hi) = Spent(mid) > 1 ? (mid, hi) : (lo, mid);
            }

            return hi;
        }
    }
}
