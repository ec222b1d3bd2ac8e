using Compress.Core.Passes;
using Compress.Spec.Methods;

namespace Compress.Core.Tests.Passes;

/// <summary>Every method of the catalog (every scheme it writes, for kinds with schemes) has exactly one pass, and every pass a method.</summary>
public sealed class PassRegistryTests
{
    [Fact]
    public void Every_method_has_exactly_one_pass_and_every_pass_a_method()
    {
        var wanted = MethodCatalog.All
            .SelectMany(m => m.Schemes.Count == 0 ? [(m.Name, (string?)null)] : m.Schemes.Select(s => (m.Name, (string?)s.Name)))
            .ToHashSet();
        var registered = PassRegistry.Registered.Select(r => (r.Method, r.Scheme)).ToList();
        Assert.Equal(registered.Count, registered.Distinct().Count());
        Assert.Equal(wanted.OrderBy(w => w.ToString()), registered.OrderBy(r => r.ToString()));
    }

    [Fact]
    public void A_pass_is_a_compression_pass_with_one_constructor_taking_its_step()
    {
        foreach (var (method, _, pass) in PassRegistry.Registered)
        {
            Assert.True(typeof(ICompressionPass).IsAssignableFrom(pass), pass.Name);
            var parameter = Assert.Single(Assert.Single(pass.GetConstructors()).GetParameters());
            var kind = MethodCatalog.All.Single(m => m.Name == method).Kind.Name;
            var steps = new Dictionary<string, Type>
            {
                ["prune"] = typeof(Compress.Spec.PruneStep),
                ["quantize"] = typeof(Compress.Spec.QuantizeStep),
                ["factorize"] = typeof(Compress.Spec.FactorizeStep),
                ["allocate"] = typeof(Compress.Spec.AllocateStep),
                ["pack"] = typeof(Compress.Spec.PackStep),
                ["finetune"] = typeof(Compress.Spec.FinetuneStep),
            };
            Assert.Equal(steps[kind], parameter.ParameterType);
        }
    }
}
