using Compress.Core.Execution;
using Compress.Core.Passes.Pruning;
using Compress.Core.Torch;
using Compress.Spec;
using Compress.Spec.Methods;

namespace Compress.Core.Passes.SecondOrder;

/// <summary>
/// <c>prune.method: "woodfisher"</c> on an ONNX graph: <see cref="WoodFisher"/> with gradients through the TorchSharp
/// executor (<see cref="GradientSource"/>), masks by the step's scope.
/// </summary>
[ImplementsMethod(WoodFisherMethod.Name)]
public sealed class WoodFisherPruner(PruneStep step) : PruningPass(step)
{
    protected override void Prune(CompressionContext context, IReadOnlyList<WeightUse> uses)
    {
        var names = uses.Select(u => u.Weight.Name).ToList();
        using var source = new GradientSource(context.Model, context.Calibration, names);
        var originals = uses.Select(u => context.Model.ToTorch(u.Weight)).ToList();
        Write(context, uses, originals, WoodFisher.Prune(source, names, originals, Step, Masks, context.Progress));
    }
}
