using Compress.Core.Onnx;
using Compress.Core.Passes;
using Compress.Core.Plans;
using Compress.Core.Tests.TestSupport;
using Compress.Spec;

namespace Compress.Core.Tests.Plans;

/// <summary>
/// The per-layer plan: a step's passes follow each layer's planned sparsity or bits when an allocation wrote them
/// (here written by the test, as an allocation step will), and a global share-out is recorded back into the plan.
/// </summary>
public sealed class CompressionPlanTests : TempDirectoryTest
{
    private (CompressionContext Context, SpecStep Step) Context(string step)
    {
        var spec = SpecFiles.Load(Dir, $$"""{ "steps": [ {{step}} ] }""");
        var model = OnnxModel.Load(FashionData.MlpModel);
        return (new CompressionContext(model, spec, null), spec.Steps.Single());
    }

    [Fact]
    public void Pruning_follows_each_layers_allocated_sparsity_whatever_the_scope()
    {
        var (context, step) = Context("""{ "prune": { "method": "magnitude", "sparsity": 0.5 } }""");
        var allocated = new Dictionary<string, double> { ["fc1.weight"] = 0.9, ["fc2.weight"] = 0.5, ["fc3.weight"] = 0.0 };
        foreach (var (weight, sparsity) in allocated)
        {
            context.Plan.Allocate(step, new LayerPlan(weight, PlanSource.Step) { Sparsity = sparsity });
        }

        PassRegistry.Create(step).Apply(context);

        foreach (var (weight, sparsity) in allocated)
        {
            Assert.Equal(sparsity, context.Layers[weight].Sparsity, 3);
            Assert.Equal(PlanSource.Allocation, context.Plan.For(step, weight).Source);
        }

        Assert.Contains(context.Notes, n => n == "prune/magnitude: per-layer sparsity from the allocation (3 layers)");
    }

    [Fact]
    public void A_global_share_out_is_recorded_in_the_plan()
    {
        var (context, step) = Context("""{ "prune": { "method": "magnitude", "sparsity": 0.7 } }""");
        Assert.Equal(new LayerPlan("fc1.weight", PlanSource.Step) { Sparsity = 0.7 }, context.Plan.For(step, "fc1.weight"));

        PassRegistry.Create(step).Apply(context);

        var shares = context.Plan.Written(step);
        Assert.Equal(3, shares.Count);
        Assert.All(shares.Values, p => Assert.Equal(PlanSource.GlobalShares, p.Source));
        Assert.All(shares.Values, p => Assert.Equal(context.Layers[p.Weight].Sparsity, p.Sparsity));
        Assert.NotEqual(shares["fc1.weight"].Sparsity, shares["fc3.weight"].Sparsity); // shares differ by layer
    }

    [Fact]
    public void Weight_only_quantization_follows_each_layers_allocated_bits()
    {
        var (context, step) = Context("""{ "quantize": { "weights": "int4", "blockSize": 32 } }""");
        context.Plan.Allocate(step, new LayerPlan("fc1.weight", PlanSource.Step) { Bits = 4 });
        context.Plan.Allocate(step, new LayerPlan("fc2.weight", PlanSource.Step) { Bits = 8 });
        context.Plan.Allocate(step, new LayerPlan("fc3.weight", PlanSource.Step) { Bits = 32 });

        PassRegistry.Create(step).Apply(context);

        Assert.Equal("int4 MatMulNBits block 32", context.Layers["fc1.weight"].Format.ToString());
        Assert.Equal(8, context.Layers["fc2.weight"].Bits);
        Assert.Equal(new WeightFormat(WeightEncoding.MatMulNBits, 8) { BlockSize = 32 }, context.Layers["fc2.weight"].Format);
        Assert.False(context.Layers.ContainsKey("fc3.weight"));
        Assert.Contains(context.Notes, n => n.Contains("'fc3' kept float (allocated 32 bits)", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("""{ "quantize": { "weights": "int8", "activations": "dynamic" } }""", "int8 dynamic")]
    [InlineData("""{ "quantize": { "weights": "fp16" } }""", "float16")]
    public void An_allocation_keeps_a_layer_float_in_every_scheme(string step, string format)
    {
        var (context, spec) = Context(step);
        context.Plan.Allocate(spec, new LayerPlan("fc2.weight", PlanSource.Step) { Bits = 32 });

        PassRegistry.Create(spec).Apply(context);

        Assert.Equal(format, context.Layers["fc1.weight"].Format.ToString());
        Assert.False(context.Layers.ContainsKey("fc2.weight"));
        Assert.Equal(format, context.Layers["fc3.weight"].Format.ToString());
    }

    [Fact]
    public void Formats_read_as_the_reports_always_wrote_them()
    {
        Assert.Equal("float32", WeightFormat.Float32.ToString());
        Assert.Equal("int8 QDQ per-tensor (GPTQ) bitmask",
            new WeightFormat(WeightEncoding.QdqInt8, 8) { PerTensor = true, Rounding = "GPTQ", Layout = SparseLayout.Bitmask }.ToString());
        Assert.Equal("int4 MatMulNBits block 64 asymmetric sparse",
            new WeightFormat(WeightEncoding.MatMulNBits, 4) { BlockSize = 64, Asymmetric = true, Layout = SparseLayout.Sparse }.ToString());
        Assert.Equal("2:4", new SparsityPattern(2, 4).ToString());
    }
}
