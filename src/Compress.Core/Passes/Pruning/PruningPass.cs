using Compress.Core.Onnx;
using Compress.Core.Passes.Quantization;
using Compress.Core.Plans;
using Compress.Core.Torch;
using Compress.Spec;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Passes.Pruning;

/// <summary>
/// What every pruner shares: the step's weights (each once: a weight shared by several nodes is pruned at its
/// first use), their plans (<see cref="CompressionPlan"/>: the step's sparsity, or an allocation's per layer),
/// masks from saliency scores by the plan or the step's scope, and writing the result back with per-layer sparsity
/// and error (a global scope's shares recorded in the plan). A subclass computes the pruned weights.
/// </summary>
public abstract class PruningPass(PruneStep step) : ICompressionPass
{
    protected PruneStep Step { get; } = step;

    public string Name => $"prune/{Step.Method}";

    public void Apply(CompressionContext context)
    {
        TorchRuntime.EnsureLoaded();
        var uses = WeightSelection.Select(context.Model.Graph, Step).GroupBy(u => u.Weight.Name).Select(g => g.First()).ToList();
        if (uses.Count == 0)
        {
            context.Notes.Add($"prune: no {string.Join("/", Step.OpTypes)} weights selected; nothing pruned");
            return;
        }

        using var scope = NewDisposeScope();
        LayerPlans = uses.Select(u => context.Plan.For(Step, u.Weight.Name)).ToList();
        Allocated = context.Plan.IsAllocated(Step);
        if (Allocated)
        {
            context.Notes.Add($"{Name}: per-layer sparsity from the allocation ({uses.Count} layers)");
        }

        Prune(context, uses);
    }

    /// <summary>Whether use <paramref name="i"/> is a layer the allocation keeps dense under an N:M pattern (left as it is).</summary>
    protected bool KeptDense(int i) => Allocated && Step.N > 0 && (LayerPlans[i].Sparsity ?? 0) == 0;

    /// <summary>The plan of each weight the step prunes, in the order of the uses given to <see cref="Prune"/>.</summary>
    protected IReadOnlyList<LayerPlan> LayerPlans { get; private set; } = [];

    /// <summary>Whether an allocation set the layers' sparsities (then each layer gets its own, whatever the scope).</summary>
    protected bool Allocated { get; private set; }

    /// <summary>Each layer's target sparsity when the layers have their own (allocated, or the layer scope); null for a global share-out.</summary>
    protected double[]? LayerSparsities =>
        Allocated ? LayerPlans.Select(p => p.Sparsity ?? 0).ToArray()
        : Step.Scope == "layer" || Step.N > 0 ? LayerPlans.Select(p => p.Sparsity ?? Step.Sparsity).ToArray()
        : null;

    /// <summary>
    /// The method's rule for one layer on its own (a matrix, its input Hessians, a sparsity), for the allocation's error
    /// database: a layer-wise method that has one shares a global target out by the allocation instead of magnitudes.
    /// </summary>
    protected internal virtual Allocation.LayerPruner? DatabasePruner => null;

    /// <summary>A data-aware method with a per-layer rule shares a global target out by the allocation (algorithms.md §18).</summary>
    private bool AllocatesByDefault => DatabasePruner is not null && Step.DataAware;

    /// <summary>Prunes <paramref name="uses"/> and writes them with <see cref="Write"/> (all at once or layer by layer).</summary>
    protected abstract void Prune(CompressionContext context, IReadOnlyList<WeightUse> uses);

    /// <summary>
    /// Each layer's sparsity for the layer-wise methods, which choose the weights within a layer themselves: N:M's
    /// 1 − N/M; <c>scope: "layer"</c>, the target; <c>global</c>, the layer's share of one global threshold on
    /// scale-free magnitudes with every layer capped at <c>maxLayerSparsity</c> (algorithms.md §1, §4).
    /// </summary>
    protected double[] LayerTargets(CompressionContext context, IReadOnlyList<WeightUse> uses)
    {
        if (LayerSparsities is { } own)
        {
            return own; // N:M, the layer scope, or an allocation
        }

        if (AllocatesByDefault)
        {
            var pruner = DatabasePruner!;
            return Allocation.DefaultAllocation.PruneShares(context, Step, uses, pruner);
        }

        using var scope = NewDisposeScope();
        var magnitudes = uses.Select(u => SparsityBudget.ScaleFreeMagnitude(context.Model.ToTorch(u.Weight))).ToList();
        return SparsityBudget.Global(magnitudes, Step.Sparsity, Step.MaxLayerSparsity)
            .Select(m => 1 - m.to_type(ScalarType.Float64).mean().item<double>()).ToArray();
    }

    /// <summary>
    /// The layer-wise pruners' loop (SparseGPT, Wanda): each layer in graph order, its input from one sequential pass
    /// (<see cref="CompressionContext.Layerwise"/>) with the earlier layers already pruned; <paramref name="prune"/>
    /// gets the layer, its weight as [rows = outputs, cols = inputs (·kh·kw)] and its target, and returns the pruned
    /// matrix, which is written and handed to the pass for the layers after it.
    /// </summary>
    /// <param name="started">Called once the sequential pass has started, before the first layer (e.g. to take a dense copy of the model's activations).</param>
    protected void EachLayer(CompressionContext context, IReadOnlyList<WeightUse> uses, string method, Func<WeightUse, Tensor, double, Tensor> prune, Action? started = null)
    {
        var targets = LayerTargets(context, uses);
        using var sequential = context.Layerwise(method);
        started?.Invoke();
        for (var i = 0; i < uses.Count; i++)
        {
            using var scope = NewDisposeScope();
            var use = uses[i];
            if (KeptDense(i))
            {
                context.Progress($"{method}: {use.NodeName} ({i + 1}/{uses.Count}) kept dense by the allocation");
                continue; // the frontier goes on with the layer as it is
            }

            var weight = context.Model.ToTorch(use.Weight);
            var matrix = SecondOrder.LayerMatrix.ToMatrix(weight, use);
            context.Progress($"{method}: {use.NodeName} ({i + 1}/{uses.Count}), target {targets[i]:P1}");
            var pruned = SecondOrder.LayerMatrix.FromMatrix(prune(use, matrix, targets[i]), use);
            Write(context, [use], [weight], [pruned]);
            context.Frontier?.SetWeight(use.Weight.Name, pruned);
        }
    }

    /// <summary>Refuses N:M on a layer whose input size (the groups' axis) is not a multiple of M, naming it (CMP0107 at the step).</summary>
    protected void CheckGroups(CompressionContext context, WeightUse use, long columns) => CheckGroups(context.Spec, Step, use, columns);

    /// <summary>The same check for <paramref name="step"/> from outside a pruning pass (the allocation, before its database).</summary>
    internal static void CheckGroups(CompressionSpec spec, PruneStep step, WeightUse use, long columns)
    {
        if (columns % step.M != 0)
        {
            throw Spec.SpecLoader.At(spec, step.Line, step.Column, SpecCodes.Inconsistent,
                $"pattern {step.N}:{step.M} needs the input size of '{use.NodeName}' ({columns}) to be a multiple of {step.M}; add it to 'exclude'");
        }
    }

    /// <summary>Keep-masks from scores ≥ 0: per layer, or one global threshold with every layer capped at <c>maxLayerSparsity</c>.</summary>
    /// <remarks>
    /// With an allocation, each layer keeps its own share of the schedule: <paramref name="sparsity"/> is the step's
    /// (or a WoodFisher sub-step's) target and layer l prunes plan_l · sparsity / step sparsity.
    /// </remarks>
    protected List<Tensor> Masks(IReadOnlyList<Tensor> scores, double sparsity) =>
        Allocated
            ? scores.Select((s, i) => SparsityBudget.Layer(s, Step.Sparsity > 0 ? (LayerPlans[i].Sparsity ?? 0) * sparsity / Step.Sparsity : LayerPlans[i].Sparsity ?? 0)).ToList()
            : SparsityBudget.Masks(scores, sparsity, Step);

    protected static List<Tensor> Masked(IReadOnlyList<Tensor> weights, IReadOnlyList<Tensor> masks) => SparsityBudget.Apply(weights, masks);

    /// <param name="originals">The weights before this step.</param>
    /// <param name="pruned">The weights after it (zeros where pruned; other values may have been updated).</param>
    protected void Write(CompressionContext context, IReadOnlyList<WeightUse> uses, IReadOnlyList<Tensor> originals, IReadOnlyList<Tensor> pruned)
    {
        long zeros = 0;
        for (var i = 0; i < uses.Count; i++)
        {
            zeros += WriteLayer(context, uses[i], originals[i], pruned[i]);
        }

        Report(context, uses, zeros);
    }

    /// <summary>Writes one layer's pruned weight with its sparsity and error; returns how many of its weights are zero.</summary>
    protected long WriteLayer(CompressionContext context, WeightUse use, Tensor original, Tensor pruned)
    {
        using var layer = NewDisposeScope(); // this layer's copies go as soon as it is written
        var values = where(pruned.ne(0), pruned, 0f); // +0.0, not −0.0: zeros must be all-zero bytes for sparse storage
        var count = values.numel();
        var layerZeros = count - values.count_nonzero().item<long>();
        var record = context.Layer(use.Weight.Name, use.NodeName, use.Node.OpType, count);
        record.Sparsity = layerZeros / (double)count;
        if (!Allocated && Step.Scope == "global" && Step.N == 0)
        {
            context.Plan.Record(Step, new LayerPlan(use.Weight.Name, AllocatesByDefault ? PlanSource.Allocation : PlanSource.GlobalShares) { Sparsity = record.Sparsity });
        }
        record.RelativeError += WeightQuantization.RelativeError(original, values);
        context.Model.ReplaceData(use.Weight, values.ToOnnx(use.Weight.Name));
        return layerZeros;
    }

    protected void Report(CompressionContext context, IReadOnlyList<WeightUse> uses, long zeros)
    {
        var total = uses.Sum(u => OnnxElementTypes.ElementCount(u.Weight.Dims));
        context.Progress($"{Name}: {uses.Count} weights, {zeros:N0} of {total:N0} set to zero ({zeros / (double)total:P1})");
    }
}
