using Compress.Spec;
using Compress.Spec.Methods;

namespace Compress.Core.Tests.Spec;

/// <summary>The descriptors are consistent with each other and with the spec reader that reads them.</summary>
public sealed class MethodCatalogTests
{
    public static TheoryData<string> Methods => new(MethodCatalog.All.Select(m => m.ToString()));

    [Fact]
    public void Names_and_aliases_are_unique_within_a_kind()
    {
        foreach (var kind in MethodCatalog.Kinds)
        {
            var names = kind.Methods.SelectMany(m => m.Names).ToList();
            Assert.Equal(names.Distinct().Count(), names.Count);
            Assert.Contains(kind.DefaultMethod, names);
            Assert.Equal(names, SpecReader.Choices[$"{kind.Name}.method"]);
        }

        Assert.Equal(MethodCatalog.Kinds.Select(k => k.Name), SpecReader.Keys["step"]);
    }

    [Theory]
    [MemberData(nameof(Methods))]
    public void A_descriptor_is_complete(string name)
    {
        var method = MethodCatalog.All.Single(m => m.ToString() == name);
        Assert.False(string.IsNullOrWhiteSpace(method.Summary));
        Assert.True(method.Formats.HasFlag(ModelFormat.Onnx), "every method runs on ONNX models");
        // A kind has schemes for all its methods or for none; without schemes the method names its own operators.
        var schemed = method.Kind.Methods.Any(m => m.Schemes.Count > 0);
        Assert.Equal(schemed, method.Schemes.Count > 0);
        Assert.Equal(schemed, method.OpTypes.Count == 0);
        Assert.All(method.Schemes, s => Assert.NotEmpty(s.OpTypes));
        foreach (var option in method.Options)
        {
            Assert.DoesNotContain(option.Key, method.Kind.OwnKeys);
            Assert.InRange(option.Default, option.Minimum, option.Maximum);
            Assert.False(string.IsNullOrWhiteSpace(option.Summary));
            Assert.Contains(option.Key, SpecReader.Keys[method.Kind.Name]);
        }
    }

    [Fact]
    public void An_option_a_method_does_not_take_is_refused_naming_the_methods_that_do()
    {
        var spec = """{ "steps": [ { "prune": { "method": "magnitude", "sparsity": 0.5, "damping": 0.1 } } ] }""";
        var error = Assert.Throws<SpecException>(() => SpecReader.Read(spec, "spec.json", checkFiles: false));
        var takers = MethodCatalog.Of(StepKind.Prune).Where(m => m.Option("damping") is not null).Select(m => $"'{m.Name}'");
        Assert.Equal($"'damping' applies to the {string.Join(" and ", takers)} methods, not 'magnitude'", error.Message);
    }

    [Fact]
    public void An_alias_reads_as_its_method_and_stays_as_written()
    {
        var spec = SpecReader.Read("""{ "data": { "calibration": { "path": "c.npz" } }, "steps": [ { "prune": { "method": "sparsegpt", "sparsity": 0.5 } } ] }""", "spec.json", checkFiles: false);
        var step = Assert.IsType<PruneStep>(Assert.Single(spec.Steps));
        Assert.Equal("sparsegpt", step.Method);
        Assert.Same(ObsMethod.Descriptor, MethodCatalog.Of(step));
        Assert.Equal((128, 0.01), (step.BlockSize, step.Damping)); // obs's defaults
    }
}
