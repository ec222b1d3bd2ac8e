using Compress.Core.StateDicts;
using Compress.Spec.Methods;

namespace Compress.Core.Tests.StateDicts;

/// <summary>The TorchScript and TorchSharp compressors run exactly the methods whose descriptors offer their format.</summary>
public sealed class TorchFormatsTests
{
    [Fact]
    public void TorchScript_prunes_with_a_handler_for_each_method_offered_for_it()
    {
        var offered = MethodCatalog.Of(StepKind.Prune).Where(m => m.Offers(ModelFormat.TorchScript)).Select(m => m.Name);
        Assert.Equal(offered.Order(), TorchScriptCompressor.Pruners.Keys.Order());
    }

    [Fact]
    public void A_state_dict_is_pruned_by_magnitude_only()
    {
        // StateDictCompressor has no graph and no data: its one pruner is magnitude's.
        var offered = MethodCatalog.Of(StepKind.Prune).Where(m => m.Offers(ModelFormat.TorchSharp)).Select(m => m.Name);
        Assert.Equal([MagnitudeMethod.Name], offered);
    }
}
