using Compress.Core.Onnx;
using Compress.Core.Passes;
using Compress.Core.Passes.Factorization;
using Compress.Core.Reports;
using Compress.Core.Torch;
using Compress.Spec;
using static TorchSharp.torch;

namespace Compress.Core.Allocation;

/// <summary>What a rank allocation's budget counts: the bytes of the layers' float weights, or their multiply-adds per sample.</summary>
public enum RankCost
{
    Bytes,
    Macs,
}

/// <summary>One layer a factorize step can split: its dense cost and the ranks it may take, each with its whitened output error.</summary>
/// <param name="Ranks">The ranks offered, ascending (multiples of 8 within the ¾ rule); the dense choice comes on top of them.</param>
/// <param name="Errors">Σ_{k&gt;r} σ_k² / Σ σ_k² of the whitened SVD for each rank: the layer's relative output error on the calibration inputs.</param>
/// <param name="Macs">The layer's multiply-adds per sample, dense.</param>
public sealed record RankChoices(WeightUse Use, long Inputs, long Outputs, long Macs, IReadOnlyList<long> Ranks, IReadOnlyList<double> Errors)
{
    /// <summary>The share of the layer's weights and multiply-adds the factors keep at <paramref name="rank"/>: r(in + out) / (in·out).</summary>
    public double Share(long rank) => rank * (double)(Inputs + Outputs) / (Inputs * (double)Outputs);
}

/// <summary>
/// Ranks per layer for a <c>factorize</c> step under a size or compute budget (algorithms.md §18): each layer the step
/// can split is offered dense (error 0) or a rank r, a multiple of 8 whose factors keep at most ¾ of its weights, with the
/// relative output error of the truncated activation-aware SVD (§16) — Σ_{k&gt;r} σ_k² / Σ σ_k², exact for the layer on the
/// calibration inputs — weighted by the layer's loss sensitivity to the round's power γ when measured. Both costs are
/// separable (r(in + out) weights, r(in + out) multiply-adds per row), so <see cref="DynamicProgram"/> and
/// <see cref="QuboAnnealer"/> solve the problem as given. The factorize step then splits each layer at its rank in the
/// channel form (the spatial Conv form is not offered) and keeps the dense ones whole.
/// </summary>
public sealed class RankAllocation
{
    private readonly double[] _sensitivity;

    private RankAllocation(List<RankChoices> layers, double[] sensitivity, double[] traces, long sourceMacs)
    {
        (Layers, _sensitivity, Traces, SourceMacs) = (layers, sensitivity, traces, sourceMacs);
    }

    /// <summary>The layers the step selects and could split, in graph order.</summary>
    public IReadOnlyList<RankChoices> Layers { get; }

    /// <summary>Tr(H_l)/n_l as measured (0 when not), for the report.</summary>
    public IReadOnlyList<double> Traces { get; }

    /// <summary>The selected layers not offered, each with why (a refused shape, or no rank within the ¾ rule).</summary>
    public IReadOnlyList<string> Left { get; private init; } = [];

    /// <summary>The source model's multiply-adds per sample (every counted node, not only the selected layers).</summary>
    public long SourceMacs { get; }

    /// <summary>Every selected layer's whitened SVD on the model as it is now, its ranks and errors; the sensitivities when asked.</summary>
    public static RankAllocation Measure(CompressionContext context, FactorizeStep factorize, bool sensitivity)
    {
        var left = new List<string>();
        TorchRuntime.EnsureLoaded();
        var graph = context.Model.Graph;
        var macs = Evaluation.FlopCount.PerNode(context.Model, context.Calibration);
        var layers = new List<RankChoices>();
        var norms = new List<double>();
        foreach (var use in LowRankForms.Splittable(graph, factorize, left))
        {
            using var scope = NewDisposeScope();
            context.Progress($"allocation: whitened SVD of {use.NodeName}");
            var svd = WhitenedSvd.Of(context, use);
            var ranks = new List<long>();
            for (var r = LowRankFactorizer.Multiple; r < Math.Min(svd.Inputs, svd.Outputs) && r * (svd.Inputs + svd.Outputs) <= LowRankFactorizer.MaxShare * svd.Inputs * svd.Outputs; r += LowRankFactorizer.Multiple)
            {
                ranks.Add(r);
            }

            if (ranks.Count == 0)
            {
                left.Add($"{use.NodeName} (rank {LowRankFactorizer.Multiple} would keep {LowRankFactorizer.Multiple * (svd.Inputs + svd.Outputs) / (double)(svd.Inputs * svd.Outputs):P0} of its weights)");
                continue;
            }

            layers.Add(new RankChoices(use, svd.Inputs, svd.Outputs, macs.GetValueOrDefault(use.Node.Output[0]), ranks, ranks.Select(svd.OutputError).ToList()));
            norms.Add(context.Model.ToTorch(use.Weight).to_type(ScalarType.Float64).square().sum().item<double>());
        }

        double[]? traces = null;
        if (sensitivity && layers.Count > 0)
        {
            traces = LayerSensitivity.Traces(context, layers.Select(l => l.Use.Weight.Name).ToList(), layers.Select(l => l.Inputs * l.Outputs).ToList(), out var why);
            if (traces is null)
            {
                context.Notes.Add($"allocation: layer sensitivities not measured (the executor cannot differentiate the model: {why}); every layer's relative error weighs alike");
            }
        }

        var weights = LayerSensitivity.Normalised(layers.Select((l, i) => traces is null ? 1 : traces[i] * norms[i]).ToList());
        return new RankAllocation(layers, weights, traces ?? new double[layers.Count], macs.Values.Sum()) { Left = left };
    }

    /// <summary>A layer's dense cost: its float32 weight bytes, or its multiply-adds.</summary>
    public static long Dense(RankChoices layer, RankCost kind) => kind == RankCost.Bytes ? layer.Inputs * layer.Outputs * 4 : layer.Macs;

    /// <summary>
    /// The problem for a budget on the layers' <paramref name="kind"/>: per layer the ranks ascending then dense (sparsity
    /// 1 − share, the share of weights the factors drop; bits 32), errors weighted by sensitivity^γ.
    /// </summary>
    public AllocationProblem Problem(RankCost kind, ProxyWeighting weighting, long budget) =>
        new(Layers.Select((l, i) =>
        {
            var weight = Math.Pow(_sensitivity[i], weighting.Gamma);
            var dense = Dense(l, kind);
            var choices = l.Ranks.Select((r, k) => new LayerChoice(1 - l.Share(r), 32, (long)Math.Ceiling(dense * l.Share(r)), weight * l.Errors[k])).ToList();
            choices.Add(new LayerChoice(0, 32, dense, 0));
            return (IReadOnlyList<LayerChoice>)choices;
        }).ToList(), budget);

    /// <summary>The rank a solution gives each layer (0: dense).</summary>
    public long[] Ranks(AllocationSolution solution) =>
        Layers.Select((l, i) => solution.Choice[i] < l.Ranks.Count ? l.Ranks[solution.Choice[i]] : 0).ToArray();

    /// <summary>The report's record of a solution (a rank's "sparsity" is the share of weights its factors drop).</summary>
    /// <remarks>The options' costs are in the budget's unit; the chosen layer's bytes are always its float32 weight bytes.</remarks>
    public AllocationFigures Figures(AllocationProblem problem, AllocationSolution solution, string solver, string budget) =>
        new(solver, budget, solution.Objective,
            Layers.Select((l, i) =>
            {
                var chosen = problem.Layers[i][solution.Choice[i]];
                var bytes = (long)Math.Ceiling(Dense(l, RankCost.Bytes) * (1 - chosen.Sparsity));
                return new AllocatedLayer(l.Use.Weight.Name, l.Use.NodeName, l.Inputs * l.Outputs, Traces[i], chosen.Sparsity, chosen.Bits, bytes,
                    problem.Layers[i].Select(c => new AllocationOption(c.Sparsity, c.Bits, c.Cost, c.Error)).ToList());
            }).ToList(),
            [], problem.Budget);

    /// <summary>"fc1 rank 96, fc2 dense, …".</summary>
    public string Describe(IReadOnlyList<long> ranks) =>
        string.Join(", ", Layers.Select((l, i) => ranks[i] > 0 ? $"{l.Use.NodeName} rank {ranks[i]}" : $"{l.Use.NodeName} dense"));
}
