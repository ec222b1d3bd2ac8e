using Compress.Spec;

namespace Compress.Core.Plans;

/// <summary>
/// The per-layer plan of a run: for each step and each layer it touches, the <see cref="LayerPlan"/> the step's pass
/// reads. A layer the plan does not name for a step gets the step's own values (<see cref="Default"/>); an allocation
/// writes its choices ahead of the step (<see cref="Allocate"/>); a pass that shares a global target out over the layers
/// records the shares it chose (<see cref="Record"/>), so the report shows every layer's plan as it was carried out.
/// </summary>
public sealed class CompressionPlan
{
    private readonly Dictionary<SpecStep, Dictionary<string, LayerPlan>> _steps = new(ReferenceEqualityComparer.Instance);

    /// <summary>The step's values for <paramref name="weight"/>, or what an allocation or the pass set for it.</summary>
    public LayerPlan For(SpecStep step, string weight) =>
        _steps.TryGetValue(step, out var layers) && layers.TryGetValue(weight, out var plan) ? plan : Default(step, weight);

    /// <summary>Whether any layer of the step was allocated its own values (the pass then follows them per layer).</summary>
    public bool IsAllocated(SpecStep step) =>
        _steps.TryGetValue(step, out var layers) && layers.Values.Any(p => p.Source == PlanSource.Allocation);

    /// <summary>An allocation's values for one layer of a step that has not run yet.</summary>
    public void Allocate(SpecStep step, LayerPlan plan) => Set(step, plan with { Source = PlanSource.Allocation });

    /// <summary>What the step's pass decided for a layer (global shares).</summary>
    public void Record(SpecStep step, LayerPlan plan) => Set(step, plan);

    /// <summary>The plans written for <paramref name="step"/> so far (allocated or recorded), by weight.</summary>
    public IReadOnlyDictionary<string, LayerPlan> Written(SpecStep step) =>
        _steps.TryGetValue(step, out var layers) ? layers : new Dictionary<string, LayerPlan>();

    public static LayerPlan Default(SpecStep step, string weight) => step switch
    {
        PruneStep p => new LayerPlan(weight, PlanSource.Step)
        {
            Sparsity = p.N > 0 ? 1 - p.N / (double)p.M : p.Sparsity,
            Pattern = p.N > 0 ? new SparsityPattern(p.N, p.M) : SparsityPattern.Unstructured,
        },
        QuantizeStep q => new LayerPlan(weight, PlanSource.Step) { Bits = q.Weights switch { "int4" => 4, "fp16" => 16, _ => 8 } },
        _ => new LayerPlan(weight, PlanSource.Step),
    };

    private void Set(SpecStep step, LayerPlan plan)
    {
        if (!_steps.TryGetValue(step, out var layers))
        {
            _steps[step] = layers = new Dictionary<string, LayerPlan>(StringComparer.Ordinal);
        }

        layers[plan.Weight] = plan;
    }
}
