using Compress.Core.Passes.Pruning;
using Compress.Core.Passes.Quantization;
using Compress.Core.Passes.SecondOrder;
using Compress.Spec;

namespace Compress.Core.Passes;

/// <summary>Chooses the pass for a spec step by name. The spec reader has already refused names not listed here.</summary>
public static class PassRegistry
{
    private static readonly Dictionary<string, Func<SpecStep, ICompressionPass>> Passes = new()
    {
        ["prune/magnitude"] = s => new MagnitudePruner((PruneStep)s),
        ["prune/obs"] = s => new ObsPruner((PruneStep)s),
        ["prune/sparsegpt"] = s => new ObsPruner((PruneStep)s),
        ["prune/snip"] = s => new SnipPruner((PruneStep)s),
        ["prune/woodfisher"] = s => new WoodFisherPruner((PruneStep)s),
        ["quantize/static"] = s => new QdqQuantizer((QuantizeStep)s),
        ["quantize/dynamic"] = s => new DynamicQuantizer((QuantizeStep)s),
        ["quantize/weight-only"] = s => new MatMulNBitsQuantizer((QuantizeStep)s),
        ["quantize/fp16"] = s => new Fp16Converter((QuantizeStep)s),
    };

    public static string KeyOf(SpecStep step) => step switch
    {
        PruneStep p => $"prune/{p.Method}",
        QuantizeStep q => $"quantize/{q.Scheme}",
        _ => throw new ArgumentException(step.GetType().Name),
    };

    public static ICompressionPass Create(SpecStep step) =>
        Passes.TryGetValue(KeyOf(step), out var create) ? create(step)
            : throw new InvalidOperationException($"no pass registered for '{KeyOf(step)}'");
}
