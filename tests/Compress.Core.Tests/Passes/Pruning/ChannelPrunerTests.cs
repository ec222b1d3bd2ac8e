using Compress.Core.Onnx;
using Compress.Core.Reports;
using Compress.Core.Tests.TestSupport;
using Xunit.Abstractions;

namespace Compress.Core.Tests.Passes.Pruning;

/// <summary>
/// <c>"pattern": "channel"</c> through the pipeline on the project's Fashion-MNIST CNN (conv 16 → conv 32 → Flatten →
/// fc 128 → fc 10): three groups lose half their channels, the last layer's outputs (the graph output) stay, the
/// tensors really shrink, and one-shot accuracy on the 10,000 test images stays close (no fine-tuning).
/// </summary>
public sealed class ChannelPrunerTests(ITestOutputHelper output) : TempDirectoryTest
{
    [Theory]
    [InlineData("obs", 0.018)]
    [InlineData("magnitude", 0.025)]
    public void Half_the_channels_of_the_cnn_go_physically_and_accuracy_holds(string method, double maxDrop)
    {
        var report = Compress($$"""{ "prune": { "method": "{{method}}", "sparsity": 0.5, "pattern": "channel", "scope": "layer" } }""");
        var model = OnnxModel.Load(report.Output);
        Assert.Equal([8L, 1, 5, 5], model.Graph.GetInitializer("conv1.weight")!.Dims);
        Assert.Equal([16L, 8, 5, 5], model.Graph.GetInitializer("conv2.weight")!.Dims);
        Assert.Equal([64L, 16 * 49], model.Graph.GetInitializer("fc1.weight")!.Dims);
        Assert.Equal([10L, 64], model.Graph.GetInitializer("fc2.weight")!.Dims);
        Assert.Contains(report.Notes, n => n.Contains("3 channel groups, 88 of 176 channels removed", StringComparison.Ordinal));
        Assert.Contains(report.Notes, n => n.Contains("left whole: fc2 (its channels reach the graph output 'logits')", StringComparison.Ordinal));
        Assert.Contains(report.Notes, n => n.StartsWith("multiply-adds per sample", StringComparison.Ordinal));
        var drop = report.Metrics!.AccuracyDrop;
        Assert.True(drop <= maxDrop, $"accuracy {report.Metrics.OriginalAccuracy:0.0000} -> {report.Metrics.CompressedAccuracy:0.0000}");
    }

    /// <summary>
    /// An <c>allocate</c> step under the multiply-adds of the uniform 50% cut (834,816 of 3,024,384, algorithms.md §18):
    /// the budget holds on the written model, the plan reaches the pruner, and the one-shot drop stays within what the
    /// uniform cut loses on 512 calibration images (1.75 points).
    /// </summary>
    [Fact]
    public void An_allocation_under_a_multiply_add_budget_meets_it_and_accuracy_holds()
    {
        var report = Compress("""
            { "allocate": { "macs": 0.2761, "sensitivity": "none" } },
            { "prune": { "method": "obs", "pattern": "channel" } }
            """);
        var written = report.Stages![^1];
        Assert.Equal("written", written.Stage);
        Assert.True(written.MultiplyAdds <= 834_816, $"{written.MultiplyAdds} multiply-adds");
        Assert.Equal(3_024_384, report.Stages[0].MultiplyAdds);
        Assert.Contains(report.Notes, n => n.StartsWith("allocate/dp: channels per group chosen by dynamic programming", StringComparison.Ordinal));
        Assert.Equal(3, report.Allocation!.Layers.Count);
        var model = OnnxModel.Load(report.Output);
        Assert.Equal(report.Allocation.Layers.Single(l => l.Node == "conv2").Sparsity, 1 - model.Graph.GetInitializer("conv2.weight")!.Dims[0] / 32.0, 9);
        var drop = report.Metrics!.AccuracyDrop;
        Assert.True(drop <= 0.02, $"accuracy {report.Metrics.OriginalAccuracy:0.0000} -> {report.Metrics.CompressedAccuracy:0.0000}");
    }

    /// <summary>
    /// The allocation's errors are measured at the model's output (algorithms.md §18), so at half the multiply-adds it
    /// finds the cut that keeps conv2 whole (8/32/64, 1,512,192 multiply-adds) instead of the consumers' own errors'
    /// choice conv1 16 / conv2 8 / fc1 128 (89.19%, 2.66 points down). The errors are held out (cross-fitted on the even
    /// and odd samples): measured in-sample, on 512 calibration images (seed 1) the refits nearly interpolated their
    /// samples, conv2 at 24 looked as cheap as fc1 at 64 and it chose 8/24/128 (90.48%, 1.37 points down). Measured:
    /// 90.96% on 512 (seed 1), 91.09% on 2,048 (seed 7).
    /// </summary>
    [Theory]
    [InlineData(512, 1)]
    [InlineData(2048, 7)]
    public void An_allocation_at_half_the_multiply_adds_keeps_conv2_whole_within_one_point(int samples, int seed)
    {
        var report = Compress("""
            { "allocate": { "macs": 0.5 } },
            { "prune": { "method": "obs", "pattern": "channel" } }
            """, samples, seed);
        var model = OnnxModel.Load(report.Output);
        Assert.Equal(32, model.Graph.GetInitializer("conv2.weight")!.Dims[0]);
        Assert.Equal(8, model.Graph.GetInitializer("conv1.weight")!.Dims[0]);
        Assert.True(report.Stages![^1].MultiplyAdds <= 1_512_192, $"{report.Stages[^1].MultiplyAdds} multiply-adds");
        Assert.Contains(report.Notes, n => n.Contains("error: KL divergence of the class scores 'logits'", StringComparison.Ordinal) && n.Contains("held out", StringComparison.Ordinal));
        Assert.Empty(report.Allocation!.Rounds); // measured at the output: one round, no sensitivity to weigh
        var drop = report.Metrics!.AccuracyDrop;
        Assert.True(drop <= 0.01, $"accuracy {report.Metrics.OriginalAccuracy:0.0000} -> {report.Metrics.CompressedAccuracy:0.0000}");
    }

    /// <summary>
    /// The issue-17 point (algorithms.md §14, "Which groups to cut"): on an AVX-512 CPU ONNX Runtime's NCHWc block is 16
    /// channels, so conv2 cut to 16 saves time but its accuracy costs most, and 20 or 24 run slower than 32. Keeping conv2
    /// whole (its producer excluded; conv2 is still refitted as conv1's consumer) and halving conv1 and fc1 halves the
    /// multiply-adds (1,512,192 of 3,024,384) and measured 1.52–1.55× at batch 1 with a one-shot drop of 0.76 points on 2,048
    /// calibration images (three bench runs); here, on 512, within 1 point (0.89).
    /// </summary>
    [Fact]
    public void Keeping_conv2_whole_halves_the_work_within_one_point()
    {
        var report = Compress("""{ "prune": { "method": "obs", "sparsity": 0.5, "pattern": "channel", "scope": "layer", "exclude": ["conv2"] } }""");
        var model = OnnxModel.Load(report.Output);
        Assert.Equal([8L, 1, 5, 5], model.Graph.GetInitializer("conv1.weight")!.Dims);
        Assert.Equal([32L, 8, 5, 5], model.Graph.GetInitializer("conv2.weight")!.Dims);
        Assert.Equal([64L, 32 * 49], model.Graph.GetInitializer("fc1.weight")!.Dims);
        Assert.Equal([10L, 64], model.Graph.GetInitializer("fc2.weight")!.Dims);
        Assert.Contains(report.Notes, n => n.Contains("2 channel groups, 72 of 144 channels removed", StringComparison.Ordinal));
        Assert.Equal(1_512_192, report.Stages![^1].MultiplyAdds);
        var drop = report.Metrics!.AccuracyDrop;
        Assert.True(drop <= 0.01, $"accuracy {report.Metrics.OriginalAccuracy:0.0000} -> {report.Metrics.CompressedAccuracy:0.0000}");
    }

    /// <summary>
    /// Below one block of 8 a group keeps the nearest power of two: conv1 at 75% keeps 4 of its 16 channels (not a whole
    /// block of 8, which would have been 50%), and conv2 reads 4. With conv2 and fc1 halved and a distillation after it,
    /// this CNN measured 2.58–2.65× faster than the dense one at 91.13% (−0.72); see algorithms.md §14.
    /// </summary>
    [Fact]
    public void Below_one_block_a_group_keeps_a_power_of_two()
    {
        var report = Compress("""{ "prune": { "method": "magnitude", "sparsity": 0.75, "pattern": "channel", "scope": "layer", "include": ["conv1"] } }""", samples: 64);
        var model = OnnxModel.Load(report.Output);
        Assert.Equal([4L, 1, 5, 5], model.Graph.GetInitializer("conv1.weight")!.Dims);
        Assert.Equal([32L, 4, 5, 5], model.Graph.GetInitializer("conv2.weight")!.Dims);
        Assert.Contains(report.Notes, n => n.Contains("12 of 16 channels removed", StringComparison.Ordinal));
    }

    /// <summary>
    /// Before a static int8 step a group a quantized Conv writes or reads keeps a multiple of 16 channels, never fewer
    /// (ONNX Runtime's fast int8 Conv kernel needs 16 output channels or more; algorithms.md §14): at 50% conv1 (16)
    /// stays whole and conv2 keeps 16 of 32, while fc1's group (Gemms only) keeps 64 of 128 as in float.
    /// </summary>
    [Fact]
    public void Before_static_int8_conv_groups_keep_a_multiple_of_16_channels()
    {
        var report = Compress("""
            { "prune": { "method": "magnitude", "sparsity": 0.5, "pattern": "channel", "scope": "layer" } },
            { "quantize": { "weights": "int8", "activations": "uint8" } }
            """, samples: 64);
        var model = OnnxModel.Load(report.Output);
        Assert.Equal([16L, 1, 5, 5], WeightDims(model, "conv1"));
        Assert.Equal([16L, 16, 5, 5], WeightDims(model, "conv2"));
        Assert.Equal(64, WeightDims(model, "fc1")[0]);
        Assert.Contains(report.Notes, n => n.Contains("2 groups read or written by a Conv that the static int8 step after it quantizes keep a multiple of 16 channels", StringComparison.Ordinal)
            && n.EndsWith("left whole: conv1 (16)", StringComparison.Ordinal));
    }

    [Fact]
    public void Excluded_producers_keep_their_group_whole()
    {
        var report = Compress("""{ "prune": { "method": "magnitude", "sparsity": 0.5, "pattern": "channel", "exclude": ["conv*"] } }""");
        var model = OnnxModel.Load(report.Output);
        Assert.Equal(16, model.Graph.GetInitializer("conv1.weight")!.Dims[0]);
        Assert.Equal(32, model.Graph.GetInitializer("conv2.weight")!.Dims[0]);
        Assert.Equal(64, model.Graph.GetInitializer("fc1.weight")!.Dims[0]);
    }

    /// <summary>The weight of node <paramref name="name"/>, read through its DequantizeLinear where it is quantized.</summary>
    private static long[] WeightDims(OnnxModel model, string name)
    {
        var input = model.Graph.Nodes.Single(n => n.Name == name).Input[1];
        var weight = model.Graph.GetInitializer(input)
            ?? model.Graph.GetInitializer(model.Graph.Nodes.Single(n => n.Output.Contains(input) && n.OpType == "DequantizeLinear").Input[0])!;
        return weight.Dims.ToArray();
    }

    private CompressionReport Compress(string steps, int samples = 512, int seed = 1)
    {
        var spec = SpecFiles.Load(Dir, $$"""
        {
          "data": {
            "calibration": { "path": {{SpecFiles.Quote(FashionData.Calibration(true))}}, "samples": {{samples}}, "seed": {{seed}} },
            "evaluation": { "path": {{SpecFiles.Quote(FashionData.Test(true))}}, "labels": "labels" }
          },
          "steps": [ {{steps}} ],
          "constraints": { "minAgreement": 0 }
        }
        """);
        var report = CompressionPipeline.Run(FashionData.CnnModel, spec, Path.Combine(Dir, "out.onnx"), measureLatency: false);
        output.WriteLine(ReportWriter.Markdown(report));
        return report;
    }
}
