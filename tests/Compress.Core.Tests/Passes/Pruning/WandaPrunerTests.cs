using Compress.Core.Calibration;
using Compress.Core.Onnx;
using Compress.Core.Passes;
using Compress.Core.Passes.SecondOrder;
using Compress.Core.Reports;
using Compress.Core.Tests.TestSupport;
using Compress.Core.Torch;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Compress.Core.Tests.Passes.Pruning;

/// <summary>
/// Wanda (algorithms.md §12) on the project's Fashion-MNIST MLP (784-300-100-10) and CNN: exact per-row sparsity and
/// N:M groups in the weights the pass writes, and one-shot accuracy against magnitude pruning on the 10,000 test
/// images (512 seeded calibration images).
/// </summary>
public sealed class WandaPrunerTests(ITestOutputHelper output) : TempDirectoryTest
{
    [Theory]
    [InlineData("mlp", 0.7)]
    [InlineData("cnn", 0.6)]
    public void Every_output_row_loses_exactly_its_share(string model, double sparsity)
    {
        var (context, uses) = Prune(model, $$"""{ "prune": { "method": "wanda", "sparsity": {{sparsity}}, "scope": "layer" } }""");
        foreach (var use in uses)
        {
            var matrix = LayerMatrix.ToMatrix(context.Model.ToTorch(use.Weight), use);
            var zeros = matrix.eq(0).sum(1);
            var expected = (long)Math.Round(sparsity * matrix.shape[1]);
            Assert.True(zeros.eq(expected).all().item<bool>(), $"{use.NodeName}: rows with {zeros.min().item<long>()}…{zeros.max().item<long>()} zeros, not {expected}");
        }
    }

    [Fact]
    public void Two_of_four_keeps_two_in_every_group_along_the_input_axis()
    {
        var (context, uses) = Prune("mlp", """{ "prune": { "method": "wanda", "sparsity": 0.5, "pattern": "2:4" } }""");
        foreach (var use in uses)
        {
            var matrix = LayerMatrix.ToMatrix(context.Model.ToTorch(use.Weight), use);
            var kept = matrix.ne(0).reshape(matrix.shape[0], matrix.shape[1] / 4, 4).sum(2);
            Assert.True(kept.eq(2).all().item<bool>(), $"{use.NodeName}: a group of four does not keep exactly two weights");
        }
    }

    /// <summary>
    /// With the default global scope, wanda takes each layer's share from the allocation (its own per-layer error
    /// database, algorithms.md §18) and magnitude from one LAMP threshold. Measured (512 seeded calibration images,
    /// 10,000 test images, dense 89.29%), MLP at 70%: wanda 79.58% (agreement 0.834) — 79.10% with magnitude's shares
    /// before the allocation — against magnitude 77.62% (0.802). Per layer (<c>scope: "layer"</c>) wanda does <b>not</b>
    /// beat magnitude on this MLP at 70% (69.68% against 70.52%; it does at 50%: 87.86% against 87.19%), so that is not
    /// asserted.
    /// </summary>
    [Fact]
    public void At_seventy_percent_wanda_with_allocated_shares_beats_global_magnitude_on_the_mlp()
    {
        var magnitude = Compress("""{ "prune": { "method": "magnitude", "sparsity": 0.7 } }""");
        var wanda = Compress("""{ "prune": { "method": "wanda", "sparsity": 0.7 } }""");
        output.WriteLine($"mlp 70% global: wanda {Accuracy(wanda):P2} (agreement {wanda.Metrics!.Agreement:0.000}), magnitude {Accuracy(magnitude):P2} ({magnitude.Metrics!.Agreement:0.000})");
        Assert.InRange(wanda.Size.OverallSparsity, 0.69, 0.705); // Wanda keeps whole weights per row
        Assert.NotNull(wanda.Allocation);
        Assert.Null(magnitude.Allocation);
        Assert.True(Accuracy(wanda) >= Accuracy(magnitude) + 0.01, $"wanda {Accuracy(wanda):P2} is not a point above magnitude {Accuracy(magnitude):P2}");
        Assert.True(wanda.Metrics.Agreement >= magnitude.Metrics.Agreement + 0.02);
    }

    /// <summary>The pass on its own, on the model as loaded: the weights it wrote are read back dense.</summary>
    private (CompressionContext Context, IReadOnlyList<WeightUse> Uses) Prune(string model, string step)
    {
        var image = model == "cnn";
        var spec = SpecFiles.Load(Dir, $$"""
            { "data": { "calibration": { "path": {{SpecFiles.Quote(FashionData.Calibration(image))}}, "samples": 256, "seed": 7 } },
              "steps": [ {{step}} ] }
            """);
        var onnx = OnnxModel.Load(image ? FashionData.CnnModel : FashionData.MlpModel);
        var context = new CompressionContext(onnx, spec, m => CalibrationSet.Load(spec.Calibration!, m, spec.File));
        TorchRuntime.EnsureLoaded();
        var uses = WeightSelection.Select(onnx.Graph, spec.Steps[0]);
        PassRegistry.Create(spec.Steps[0]).Apply(context);
        Assert.NotEmpty(uses);
        return (context, uses);
    }

    private static double Accuracy(CompressionReport report) => report.Metrics!.CompressedAccuracy!.Value;

    private CompressionReport Compress(string step)
    {
        var spec = SpecFiles.Load(Dir, $$"""
            {
              "data": {
                "calibration": { "path": {{SpecFiles.Quote(FashionData.Calibration(false))}}, "samples": 512, "seed": 7 },
                "evaluation": { "path": {{SpecFiles.Quote(FashionData.Test(false))}}, "labels": "labels" }
              },
              "steps": [ {{step}} ], "constraints": { "minAgreement": 0 }
            }
            """);
        return CompressionPipeline.Run(FashionData.MlpModel, spec, Path.Combine(Dir, "out.onnx"), measureLatency: false);
    }
}
