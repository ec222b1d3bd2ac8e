namespace Compress.Core.Allocation;

/// <summary>One way to compress one layer: its sparsity and bits, the bytes the writer stores for it, and its proxy error.</summary>
public sealed record LayerChoice(double Sparsity, int Bits, long Cost, double Error);

/// <summary>
/// Choose one <see cref="LayerChoice"/> per layer minimising the summed error under Σ cost ≤ <see cref="Budget"/>
/// (algorithms.md §12). Solved exactly by <see cref="DynamicProgram"/> or as a QUBO by <see cref="QuboAnnealer"/>.
/// </summary>
public sealed class AllocationProblem
{
    public AllocationProblem(IReadOnlyList<IReadOnlyList<LayerChoice>> layers, long budget)
    {
        if (layers.Count == 0 || layers.Any(l => l.Count == 0))
        {
            throw new ArgumentException("every layer needs at least one choice", nameof(layers));
        }

        Layers = layers;
        Budget = budget;
    }

    public IReadOnlyList<IReadOnlyList<LayerChoice>> Layers { get; }

    public long Budget { get; }

    /// <summary>The smallest total cost any allocation can reach (each layer at its cheapest choice).</summary>
    public long MinimumCost => Layers.Sum(l => l.Min(c => c.Cost));

    public bool IsFeasible => MinimumCost <= Budget;

    public double Objective(IReadOnlyList<int> choice) => Layers.Select((l, i) => l[choice[i]].Error).Sum();

    public long Cost(IReadOnlyList<int> choice) => Layers.Select((l, i) => l[choice[i]].Cost).Sum();
}

/// <summary>A solver's answer: the chosen option per layer, its objective and cost, and the time taken.</summary>
public sealed record AllocationSolution(int[] Choice, double Objective, long Cost, TimeSpan Time);
