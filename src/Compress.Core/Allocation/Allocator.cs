using Compress.Core.Onnx;
using Compress.Core.Passes;
using Compress.Core.Reports;
using Compress.Spec;

namespace Compress.Core.Allocation;

/// <summary>How the proxy weighs a layer's relative output error against the others'.</summary>
/// <param name="Gamma">Exponent on the layer's loss sensitivity s_l = Tr(H_l)/n_l · ‖W_l‖² (normalised to mean 1): 0 weighs every layer alike.</param>
public readonly record struct ProxyWeighting(double Gamma)
{
    public override string ToString() => Gamma == 0 ? "relative error" : Gamma == 1 ? "relative error × sensitivity" : $"relative error × sensitivity^{Gamma:0.##}";
}

/// <summary>
/// Chooses each layer's compression from the error database (<see cref="ErrorDatabase"/>) under a budget: the proxy error
/// of a choice is the layer's relative output error weighted by its loss sensitivity (<see cref="LayerSensitivity"/>,
/// HAWQ's Hessian trace; <see cref="ProxyWeighting"/>), and <see cref="DynamicProgram"/> (exact) or
/// <see cref="QuboAnnealer"/> (the QUBO) picks one choice per layer minimising their sum.
/// </summary>
public sealed class Allocator
{
    private readonly List<LayerErrors> _database;
    private readonly double[] _sensitivity;

    private Allocator(List<LayerErrors> database, double[] sensitivity)
    {
        _database = database;
        _sensitivity = sensitivity;
    }

    public IReadOnlyList<LayerErrors> Database => _database;

    /// <summary>Tr(H_l)/n_l as measured (0 when not measured), for the report.</summary>
    public IReadOnlyList<double> Traces { get; private init; } = [];

    /// <summary>Builds the error database and the sensitivities on the model as it is now (the layers' inputs from it, uncompressed).</summary>
    public static Allocator Measure(CompressionContext context, IReadOnlyList<WeightUse> uses, IReadOnlyList<double> sparsities,
        Func<WeightUse, IReadOnlyList<int>> bits, LayerPruner? prune, bool measureSensitivity = true, LayerRounding? rounding = null)
    {
        var database = ErrorDatabase.Build(context, uses, sparsities, bits, prune, rounding);
        string? why = "not asked for ('sensitivity': 'none')";
        var traces = measureSensitivity ? LayerSensitivity.Traces(context, uses.Select(u => u.Weight.Name).ToList(), database.Select(l => l.Parameters).ToList(), out why) : null;
        if (traces is null && measureSensitivity)
        {
            context.Notes.Add($"allocation: layer sensitivities not measured (the executor cannot differentiate the model: {why}); every layer's relative error weighs alike");
        }

        var raw = database.Select((l, i) => traces is null ? 1 : traces[i] * l.SquaredNorm).ToArray();
        var sensitivity = LayerSensitivity.Normalised(raw);
        return new Allocator(database, sensitivity) { Traces = traces ?? new double[database.Count] };
    }

    /// <summary>The problem for a budget on <paramref name="cost"/> (a choice's cost from the layer and the entry).</summary>
    public AllocationProblem Problem(ProxyWeighting weighting, Func<LayerErrors, DatabaseEntry, long> cost, long budget) =>
        new(_database.Select((l, i) =>
        {
            var weight = Math.Pow(_sensitivity[i], weighting.Gamma);
            return (IReadOnlyList<LayerChoice>)l.Entries.Select(e => new LayerChoice(e.Sparsity, e.Bits, cost(l, e), weight * e.Error)).ToList();
        }).ToList(), budget);

    public static AllocationSolution Solve(AllocationProblem problem, string solver) =>
        solver == "anneal" ? new QuboAnnealer().Solve(problem) : DynamicProgram.Solve(problem);

    /// <summary>The report's record of a solution.</summary>
    public AllocationFigures Figures(AllocationProblem problem, AllocationSolution solution, string solver, string budget, IReadOnlyList<AllocationRound> rounds) =>
        new(solver, budget, solution.Objective,
            _database.Select((l, i) =>
            {
                var chosen = problem.Layers[i][solution.Choice[i]];
                return new AllocatedLayer(l.Use.Weight.Name, l.Use.NodeName, l.Parameters, Traces[i], chosen.Sparsity, chosen.Bits, chosen.Cost,
                    problem.Layers[i].Select(c => new AllocationOption(c.Sparsity, c.Bits, c.Cost, c.Error)).ToList());
            }).ToList(),
            rounds, problem.Budget);

    /// <summary>Weights kept at a sparsity (the cost of a prune-only allocation).</summary>
    public static long Kept(LayerErrors layer, DatabaseEntry entry) => (long)Math.Round(layer.Parameters * (1 - entry.Sparsity));
}
