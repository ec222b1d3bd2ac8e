using Compress.Core.Onnx;
using Compress.Core.Reports;
using Compress.Core.Tests.TestSupport;
using Microsoft.ML.OnnxRuntime;
using Xunit.Abstractions;

namespace Compress.Core.Tests.Passes;

/// <summary>
/// The engine's accuracy and size targets on the project's own Fashion-MNIST MLP and CNN: calibration on 512
/// seeded training images, evaluation on the full 10,000-image test set, in ONNX Runtime.
/// </summary>
public sealed class FashionCompressionTests(ITestOutputHelper output) : TempDirectoryTest
{
    /// <summary>The bound is 0.2 pp; entropy (KL) calibration clips harder and is held to 0.5 pp.</summary>
    [Theory]
    [InlineData("mlp", "uint8", "minmax", 0.002)]
    [InlineData("mlp", "int8", "percentile", 0.002)]
    [InlineData("cnn", "uint8", "minmax", 0.002)]
    [InlineData("cnn", "int8", "entropy", 0.005)]
    [InlineData("cnn", "uint8", "mse", 0.002)]
    public void Int8_static_per_channel_keeps_accuracy_at_under_a_third_of_the_size(string model, string activations, string calibration, double maxDrop)
    {
        var report = Compress(model, $$"""{ "quantize": { "weights": "int8", "activations": "{{activations}}", "calibration": "{{calibration}}" } }""");
        AssertDrop(report, maxDrop);
        Assert.True(report.Size.Ratio <= 0.30, $"size ratio {report.Size.Ratio:0.000}");
        Assert.All(report.Layers, l => Assert.Equal(8, l.Bits));
        AssertNoFloatWeightsLeft(report.Output, "QuantizeLinear", "DequantizeLinear");
        AssertReluFused(report.Output, activations, model == "cnn" ? 3 : 2);
    }

    [Fact]
    public void Bias_correction_keeps_the_cnn_within_bounds()
    {
        var report = Compress("cnn", """{ "quantize": { "weights": "int8", "activations": "int8", "calibration": "entropy", "biasCorrection": true } }""");
        AssertDrop(report, 0.005);
        Assert.DoesNotContain(report.Notes, n => n.StartsWith("bias correction:", StringComparison.Ordinal)); // measured in one sequential pass
    }

    [Fact]
    public void Int4_weight_only_block_32_on_the_mlp()
    {
        var report = Compress("mlp", """{ "quantize": { "weights": "int4", "blockSize": 32 } }""");
        AssertDrop(report, 0.01);
        Assert.True(report.Size.Ratio <= 0.20, $"size ratio {report.Size.Ratio:0.000}");
        AssertNoFloatWeightsLeft(report.Output, "DynamicQuantizeMatMul"); // form 'auto': the int4 codes multiplied as int8 (Int8FormTests)
    }

    [Fact]
    public void Int8_weight_only_and_asymmetric_int4_run_on_the_mlp()
    {
        var int8 = Compress("mlp", """{ "quantize": { "weights": "int8", "activations": "none", "blockSize": 64 } }""");
        AssertDrop(int8, 0.002);
        var asymmetric = Compress("mlp", """{ "quantize": { "weights": "int4", "blockSize": 128, "symmetric": false } }""", "asym.onnx");
        AssertDrop(asymmetric, 0.015);
    }

    [Theory]
    [InlineData("mlp")]
    [InlineData("cnn")]
    public void Fp16_keeps_accuracy_at_half_the_size(string model)
    {
        var report = Compress(model, """{ "quantize": { "weights": "fp16" } }""");
        AssertDrop(report, 0.001);
        Assert.True(report.Size.Ratio <= 0.51, $"size ratio {report.Size.Ratio:0.000}");
    }

    [Fact]
    public void Dynamic_int8_on_the_mlp()
    {
        var report = Compress("mlp", """{ "quantize": { "weights": "int8", "activations": "dynamic" } }""");
        AssertDrop(report, 0.003);
        Assert.True(report.Size.Ratio <= 0.30, $"size ratio {report.Size.Ratio:0.000}");
        AssertNoFloatWeightsLeft(report.Output, "DynamicQuantizeMatMul");
    }

    [Fact]
    public void Half_the_cnn_pruned_globally_then_int8()
    {
        var int8 = Compress("cnn", """{ "quantize": { "weights": "int8", "activations": "uint8" } }""", "int8.onnx");
        var both = Compress("cnn", """
            { "prune": { "method": "magnitude", "sparsity": 0.5, "scope": "global" } },
            { "quantize": { "weights": "int8", "activations": "uint8" } }
            """, "pruned-int8.onnx");
        AssertDrop(both, 0.01);
        Assert.InRange(both.Size.OverallSparsity, 0.49, 0.51);
        output.WriteLine($"int8 alone {int8.Size.CompressedBytes} B, 50% + int8 {both.Size.CompressedBytes} B");
        Assert.True(both.Size.CompressedBytes < int8.Size.CompressedBytes, $"pruned + int8 {both.Size.CompressedBytes} B is not smaller than int8 alone {int8.Size.CompressedBytes} B");
        Assert.Contains(both.Layers, l => l.Format.Contains("bitmask", StringComparison.Ordinal));

        // ONNX Runtime folds the bitmask unpacking at load, so its integer fusions still see constant int8 weights.
        var optimized = Path.Combine(Dir, "pruned-int8.optimized.onnx");
        using (var options = new SessionOptions { OptimizedModelFilePath = optimized, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_EXTENDED })
        using (new InferenceSession(both.Output, options))
        {
        }

        var ops = OnnxModel.Load(optimized).Graph.Nodes.Select(n => n.OpType).ToList();
        Assert.Contains("QLinearConv", ops);
        Assert.DoesNotContain("CumSum", ops);
    }

    [Theory]
    [InlineData("global", "unstructured", 0.8)]
    [InlineData("layer", "unstructured", 0.5)]
    [InlineData("layer", "2:4", 0.5)]
    public void Magnitude_pruning_reaches_its_sparsity(string scope, string pattern, double sparsity)
    {
        var report = Compress("mlp", $$"""{ "prune": { "sparsity": {{sparsity}}, "scope": "{{scope}}", "pattern": "{{pattern}}", "maxLayerSparsity": 0.95 } }""");
        var total = report.Layers.Sum(l => l.Parameters);
        var pruned = report.Layers.Sum(l => l.Sparsity * l.Parameters);
        Assert.InRange(pruned / total, sparsity - 0.005, sparsity + 0.005);
        Assert.All(report.Layers, l => Assert.True(l.Sparsity <= 0.95 + 1e-9, $"{l.Weight} {l.Sparsity}"));
        if (scope == "layer")
        {
            Assert.All(report.Layers, l => Assert.InRange(l.Sparsity, sparsity - 0.01, sparsity + 0.01));
        }

        if (sparsity >= 0.8)
        {
            Assert.True(report.Size.Ratio < 0.8, $"sparse storage should shrink the file: {report.Size.Ratio:0.000}");
        }
    }

    private CompressionReport Compress(string model, string steps, string outputName = "out.onnx")
    {
        var image = model == "cnn";
        var spec = SpecFiles.Load(Dir, $$"""
        {
          "data": {
            "calibration": { "path": {{SpecFiles.Quote(FashionData.Calibration(image))}}, "samples": 512, "seed": 7 },
            "evaluation": { "path": {{SpecFiles.Quote(FashionData.Test(image))}}, "labels": "labels" }
          },
          "steps": [ {{steps}} ],
          "constraints": { "minAgreement": 0 }
        }
        """);
        // The tests assert their own accuracy figures (collapses included), so the default floor is relaxed.
        var report = CompressionPipeline.Run(image ? FashionData.CnnModel : FashionData.MlpModel, spec, Path.Combine(Dir, outputName), measureLatency: true);
        output.WriteLine(ReportWriter.Markdown(report));
        return report;
    }

    private static void AssertDrop(CompressionReport report, double maxDrop)
    {
        var m = report.Metrics!;
        Assert.Equal(10_000, m.Samples);
        Assert.True(m.AccuracyDrop <= maxDrop, $"accuracy {m.OriginalAccuracy:0.0000} -> {m.CompressedAccuracy:0.0000}");
    }

    /// <summary>
    /// No Q→DQ pair between a layer and the Relu reading it: each Relu reads its Conv/Gemm's output, and its own output
    /// goes through one QuantizeLinear whose zero point is the bottom of the grid (ONNX Runtime then drops the Relu into
    /// the integer kernel).
    /// </summary>
    private static void AssertReluFused(string path, string activations, int count)
    {
        var graph = OnnxModel.Load(path).Graph;
        var relus = graph.Nodes.Where(n => n.OpType == "Relu").ToList();
        Assert.Equal(count, relus.Count);
        Assert.All(relus, relu =>
        {
            Assert.Contains(graph.GetProducer(relu.Input[0])!.OpType, new[] { "Conv", "Gemm" });
            var q = Assert.Single(graph.GetConsumers(relu.Output[0]));
            Assert.Equal("QuantizeLinear", q.OpType);
            var zero = graph.GetInitializer(q.Input[2])!;
            Assert.Equal(activations == "uint8" ? 0 : -128, activations == "uint8" ? zero.RawData[0] : (sbyte)zero.RawData[0]);
        });
    }

    /// <summary>The written model loads in ONNX Runtime, holds the expected quantized ops, and no original float weight is left.</summary>
    private static void AssertNoFloatWeightsLeft(string path, params string[] expectedOps)
    {
        using var session = new InferenceSession(path);
        var model = OnnxModel.Load(path);
        var ops = model.Proto.Graph.Node.Select(n => n.OpType).ToHashSet();
        Assert.All(expectedOps, op => Assert.Contains(op, ops));
        var floatWeights = model.Proto.Graph.Initializer.Where(t => t.DataType == 1 && t.Name.EndsWith(".weight", StringComparison.Ordinal)).Select(t => t.Name);
        Assert.Empty(floatWeights);
    }
}
