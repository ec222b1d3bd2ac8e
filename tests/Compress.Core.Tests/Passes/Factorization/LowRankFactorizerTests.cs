using Compress.Core.Onnx;
using Compress.Core.Reports;
using Compress.Core.Tests.TestSupport;
using Xunit.Abstractions;

namespace Compress.Core.Tests.Passes.Factorization;

/// <summary>
/// <c>factorize</c> (activation-aware SVD) on the project's Fashion-MNIST MLP (784-300-100-10): each Gemm becomes two
/// of a rank that is a multiple of 8 and keeps the model smaller, a layer where the rank would not save a quarter stays
/// as it was, and accuracy on the 10,000 test images stays close.
/// </summary>
public sealed class LowRankFactorizerTests(ITestOutputHelper output) : TempDirectoryTest
{
    [Fact]
    public void The_mlp_layers_become_two_smaller_gemms_and_accuracy_holds()
    {
        var report = Compress("""{ "factorize": { "energy": 0.999 } }""");
        var model = OnnxModel.Load(report.Output);
        var a = model.Graph.GetInitializer("fc1.weight_lowrank_a")!;
        var b = model.Graph.GetInitializer("fc1.weight_lowrank_b")!;
        Assert.Equal(784, a.Dims[1]);
        Assert.Equal(300, b.Dims[0]);
        Assert.Equal(a.Dims[0], b.Dims[1]);
        Assert.Equal(0, a.Dims[0] % 8);
        Assert.True(a.Dims[0] * (784 + 300) < 784 * 300);
        Assert.Null(model.Graph.GetInitializer("fc1.weight"));
        Assert.Contains(report.Notes, n => n.Contains("factorize/svd: fc1 300×784 → rank", StringComparison.Ordinal));
        Assert.Contains(report.Notes, n => n.Contains("left as they were: fc3 (rank 10 would keep", StringComparison.Ordinal));
        Assert.NotNull(model.Graph.GetInitializer("fc3.weight"));
        Assert.True(report.Size.Ratio < 0.6, $"size ratio {report.Size.Ratio:0.000}");
        Assert.True(report.Metrics!.AccuracyDrop <= 0.01, $"accuracy {report.Metrics.OriginalAccuracy:0.0000} -> {report.Metrics.CompressedAccuracy:0.0000}");
    }

    [Fact]
    public void A_budget_caps_the_rank()
    {
        var report = Compress("""{ "factorize": { "energy": 0.999, "parameterRatio": 0.1, "include": ["fc1"] } }""");
        var a = OnnxModel.Load(report.Output).Graph.GetInitializer("fc1.weight_lowrank_a")!;
        Assert.Equal(24, a.Dims[0]); // 0.1·784·300/1084 = 21.7 → 21, rounded up to 24
    }

    [Fact]
    public void The_cnn_conv_takes_the_spatial_form_and_with_fc1_costs_under_a_point()
    {
        var report = Compress("""
            { "factorize": { "energy": 0.97, "include": ["conv2"] } }, { "factorize": { "energy": 0.99, "include": ["fc1"] } }
            """, image: true);
        var model = OnnxModel.Load(report.Output);
        Assert.Equal([32L, 16, 5, 1], model.Graph.GetInitializer("conv2.weight_lowrank_a")!.Dims); // kh×1 Conv 16→32
        Assert.Equal([32L, 32, 1, 5], model.Graph.GetInitializer("conv2.weight_lowrank_b")!.Dims); // 1×kw Conv 32→32
        Assert.Contains(report.Notes, n => n.Contains("conv2 32×16×5×5 → spatial (kh×1, 1×kw) rank 32 (60 %", StringComparison.Ordinal));
        Assert.Contains(report.Notes, n => n.StartsWith("multiply-adds per sample", StringComparison.Ordinal));
        Assert.True(report.Size.Ratio < 0.3, $"size ratio {report.Size.Ratio:0.000}");
        Assert.True(report.Metrics!.AccuracyDrop <= 0.01, $"accuracy {report.Metrics.OriginalAccuracy:0.0000} -> {report.Metrics.CompressedAccuracy:0.0000}");
    }

    [Fact]
    public void An_allocation_chooses_each_rank_under_a_size_budget()
    {
        var report = Compress("""{ "allocate": { "size": 0.3, "sensitivity": "none" } }, { "factorize": { } }""");
        var model = OnnxModel.Load(report.Output);
        var ranks = new[] { "fc1", "fc2" }.Select(l => model.Graph.GetInitializer($"{l}.weight_lowrank_a")?.Dims[0] ?? 0).ToArray();
        Assert.All(ranks, r => Assert.True(r > 0 && r % 8 == 0, $"rank {r}"));
        Assert.True(ranks[0] < 88, $"fc1 rank {ranks[0]} (energy 0.999 gives 88 at 0.44 of the source)");
        Assert.NotNull(model.Graph.GetInitializer("fc3.weight"));
        Assert.Contains(report.Notes, n => n.Contains("allocate/dp: ranks chosen by dynamic programming", StringComparison.Ordinal) && n.Contains("not offered: fc3", StringComparison.Ordinal));
        Assert.Contains(report.Notes, n => n.Contains("left as they were: fc3 (the allocation offered it no rank)", StringComparison.Ordinal));
        Assert.Contains(report.Notes, n => n.Contains($"fc1 300×784 → rank {ranks[0]} by the allocation", StringComparison.Ordinal));
        Assert.True(report.Size.Ratio <= 0.3, $"size ratio {report.Size.Ratio:0.000}");
        Assert.True(report.Metrics!.AccuracyDrop <= 0.01, $"accuracy {report.Metrics.OriginalAccuracy:0.0000} -> {report.Metrics.CompressedAccuracy:0.0000}");
        Assert.Equal(2, report.Allocation!.Layers.Count);
    }

    [Fact]
    public void Under_a_multiply_add_budget_the_written_model_counts_at_most_that_and_both_solvers_agree()
    {
        var dp = Compress("""{ "allocate": { "macs": 0.25, "sensitivity": "none" } }, { "factorize": { } }""");
        var stages = dp.Stages!;
        Assert.True(stages[^1].MultiplyAdds <= 0.25 * stages[0].MultiplyAdds, $"{stages[^1].MultiplyAdds} of {stages[0].MultiplyAdds}");
        var anneal = Compress("""{ "allocate": { "method": "anneal", "macs": 0.25, "sensitivity": "none" } }, { "factorize": { } }""");
        Assert.True(anneal.Allocation!.Objective <= dp.Allocation!.Objective * 1.01, $"anneal {anneal.Allocation.Objective} vs dp {dp.Allocation.Objective}");
        Assert.True(anneal.Stages![^1].MultiplyAdds <= 0.25 * anneal.Stages[0].MultiplyAdds);
    }

    private CompressionReport Compress(string steps, bool image = false)
    {
        var spec = SpecFiles.Load(Dir, $$"""
        {
          "data": {
            "calibration": { "path": {{SpecFiles.Quote(FashionData.Calibration(image))}}, "samples": 512, "seed": 1 },
            "evaluation": { "path": {{SpecFiles.Quote(FashionData.Test(image))}}, "labels": "labels" }
          },
          "steps": [ {{steps}} ],
          "constraints": { "minAgreement": 0 }
        }
        """);
        var report = CompressionPipeline.Run(image ? FashionData.CnnModel : FashionData.MlpModel, spec, Path.Combine(Dir, "out.onnx"), measureLatency: false);
        output.WriteLine(ReportWriter.Markdown(report));
        return report;
    }
}
