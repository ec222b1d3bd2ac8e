using Compress.Core.Calibration;
using Compress.Core.Diagnostics;
using Compress.Core.Evaluation;
using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Reports;
using Compress.Core.Tests.TestSupport;
using Compress.Spec;
using Xunit.Abstractions;

namespace Compress.Core.Tests.Calibration;

/// <summary>
/// Data-free compression: calibration inputs synthesised from BatchNorm statistics (ZeroQ) on the ResNet-20 fixture
/// that keeps its BatchNormalization nodes, refusals where that cannot work, and the CMP0080 warning on every run
/// that real data did not check. Accuracies are measured afterwards on the real Fashion-MNIST test set.
/// </summary>
public sealed class DistilledDataTests(ITestOutputHelper output) : TempDirectoryTest
{
    private static string ResNet20 => Path.Combine(TestData.RepoRoot, "tests", "fixtures", "resnet20", "resnet20_fashion_bn.onnx");

    private static string FoldedResNet20 => Path.Combine(TestData.RepoRoot, "tests", "fixtures", "resnet20", "resnet20_fashion.onnx");

    [Fact]
    public void Synthesis_matches_the_batchnorm_statistics_and_the_same_seed_gives_the_same_bytes()
    {
        var request = new SyntheticData { Samples = 36, Iterations = 60, Seed = 3 }; // two batches: 32 and 4
        var progress = new List<string>();
        var (set, figures) = DistilledData.Synthesize(ResNet20, request, "spec.json", progress.Add);
        output.WriteLine(string.Join('\n', progress));
        output.WriteLine(figures.Note);
        Assert.Equal(21, figures.BatchNormLayers);
        Assert.True(figures.FinalLoss < figures.InitialLoss / 20, $"statistics loss {figures.InitialLoss:G4} → {figures.FinalLoss:G4}");
        Assert.Contains(progress, p => p.StartsWith("synthesize: batch 2/2, step 60/60", StringComparison.Ordinal));
        var inputs = Assert.Single(set.Inputs);
        Assert.Equal(("input", 36), (inputs.Key, set.Count));
        Assert.Equal([36L, 1, 28, 28], inputs.Value.Shape);
        Assert.Null(set.Labels);

        var again = DistilledData.Synthesize(ResNet20, request, "spec.json", _ => { }).Set.Inputs["input"];
        Assert.Equal(inputs.Value.Data, again.Data);
        var other = DistilledData.Synthesize(ResNet20, new SyntheticData { Samples = 8, Iterations = 1, Seed = 4 }, "spec.json", _ => { }).Set.Inputs["input"];
        Assert.NotEqual(inputs.Value.Data.AsSpan(0, other.Data.Length).ToArray(), other.Data);
    }

    /// <summary>
    /// Static int8 on the ResNet-20 (91.13 %) calibrated on 64 synthesised inputs (the default): the run never evaluates on them
    /// (no metrics), warns CMP0080 at data.calibration in every report, and the model is then measured on the real test set.
    /// </summary>
    [Fact]
    public void Data_free_static_int8_on_resnet20_is_calibrated_on_synthesised_inputs_and_holds_on_the_real_test_set()
    {
        var spec = SpecFiles.Load(Dir, """
            {
              "data": { "calibration": { "synthesize": "batchnorm" } },
              "steps": [ { "quantize": { "weights": "int8", "activations": "uint8" } } ]
            }
            """);
        var progress = new List<string>();
        var outputPath = Path.Combine(Dir, "int8.onnx");
        var report = CompressionPipeline.Run(ResNet20, spec, outputPath, progress.Add, measureLatency: false);
        output.WriteLine(ReportWriter.Markdown(report));
        Assert.Null(report.Metrics);
        var warning = Assert.Single(report.Warnings!, w => w.Code == DiagnosticCodes.NotCheckedOnRealData);
        Assert.Equal((spec.File, 2, 28), (warning.File, warning.Line, warning.Column));
        Assert.Contains("not checked on real data", warning.Message, StringComparison.Ordinal);
        Assert.Contains(report.Notes, n => n.StartsWith("calibration: 64 inputs synthesised from the statistics of 21 BatchNormalization layers", StringComparison.Ordinal));
        Assert.Contains(progress, p => p.StartsWith("synthesize: 64 inputs from 21 BatchNormalization layers", StringComparison.Ordinal));
        Assert.All(report.Layers, l => Assert.Equal(8, l.Bits));
        foreach (var file in new[] { "r.json", "r.md", "r.html" })
        {
            ReportWriter.Write(report, Path.Combine(Dir, file));
            Assert.Contains("CMP0080", File.ReadAllText(Path.Combine(Dir, file)), StringComparison.Ordinal);
        }

        var synthesised = Measure(ResNet20, outputPath);
        var real = Measure(ResNet20, Compress(ResNet20, """{ "calibration": { "path": {{calibration}}, "samples": 64 } }""",
            """{ "quantize": { "weights": "int8", "activations": "uint8" } }""", "real.onnx"));
        output.WriteLine($"dense {synthesised.OriginalAccuracy:P2}; static int8 calibrated on 64 synthesised inputs {synthesised.CompressedAccuracy:P2}, on 64 real training images {real.CompressedAccuracy:P2}");
        Assert.InRange(synthesised.OriginalAccuracy!.Value, 0.9112, 0.9114);
        Assert.True(synthesised.AccuracyDrop <= 0.02, $"accuracy {synthesised.OriginalAccuracy:P2} → {synthesised.CompressedAccuracy:P2}");
    }

    /// <summary>
    /// Pruning that needs data: layer-wise OBS at 60 % on the ResNet-20 with the distilled inputs stays within 3 points,
    /// where the same inputs before optimisation (Gaussian noise: one step) give Hessians that collapse the model.
    /// </summary>
    [Fact]
    public void Obs_pruning_on_distilled_inputs_holds_where_gaussian_noise_collapses()
    {
        const string Prune = """{ "prune": { "method": "obs", "sparsity": 0.6, "scope": "layer" } }""";
        var distilled = Measure(ResNet20, Compress(ResNet20, """{ "calibration": { "synthesize": "batchnorm" } }""", Prune, "distilled.onnx"));
        var noise = Measure(ResNet20, Compress(ResNet20, """{ "calibration": { "synthesize": "batchnorm", "iterations": 1 } }""", Prune, "noise.onnx"));
        output.WriteLine($"obs 60 %: dense {distilled.OriginalAccuracy:P2}; on 64 distilled inputs {distilled.CompressedAccuracy:P2}, on 64 Gaussian inputs {noise.CompressedAccuracy:P2}");
        Assert.True(distilled.AccuracyDrop <= 0.03, $"distilled: {distilled.OriginalAccuracy:P2} → {distilled.CompressedAccuracy:P2}");
        Assert.True(noise.CompressedAccuracy < 0.5, $"Gaussian noise: {noise.CompressedAccuracy:P2}");
    }

    /// <summary>The Fashion CNN has no BatchNorm, so data-free int8 is a scheme that needs no data; it stays within a point, with the warning.</summary>
    [Theory]
    [InlineData("dynamic")]
    [InlineData("none")]
    public void Data_free_int8_on_the_cnn_stays_within_a_point_and_warns(string activations)
    {
        var outputPath = Compress(FashionData.CnnModel, null, $$"""{ "quantize": { "weights": "int8", "activations": "{{activations}}" } }""", "cnn.onnx", out var report);
        Assert.Null(report.Metrics);
        var warning = Assert.Single(report.Warnings!, w => w.Code == DiagnosticCodes.NotCheckedOnRealData);
        Assert.Contains("the spec names no data (data-free compression)", warning.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(report.Notes, n => n.StartsWith("fidelity not measured", StringComparison.Ordinal)); // the warning says it
        var measured = Measure(FashionData.CnnModel, outputPath);
        output.WriteLine($"{activations}: dense {measured.OriginalAccuracy:P2} → int8 {measured.CompressedAccuracy:P2}, {report.Size.Ratio:0.000}× the size; {warning}");
        Assert.InRange(measured.OriginalAccuracy!.Value, 0.9184, 0.9186);
        Assert.True(measured.AccuracyDrop <= 0.01, $"accuracy {measured.OriginalAccuracy:P2} → {measured.CompressedAccuracy:P2}");
        Assert.Contains(report.Layers, l => l.Bits == 8);
    }

    /// <summary>A model without BatchNormalization (the CNN; the ResNet-20 exported with BatchNorm folded) cannot give distilled data.</summary>
    [Theory]
    [InlineData("cnn")]
    [InlineData("folded")]
    public void Synthesis_is_refused_on_a_model_without_batchnorm_at_data_calibration(string model)
    {
        var spec = SpecFiles.Load(Dir, """{ "data": { "calibration": { "synthesize": "batchnorm" } }, "steps": [ { "quantize": { "weights": "int8", "activations": "int8" } } ] }""");
        var outputPath = Path.Combine(Dir, "out.onnx");
        var error = Assert.Throws<CompressException>(() => CompressionPipeline.Run(model == "cnn" ? FashionData.CnnModel : FoldedResNet20, spec, outputPath, measureLatency: false));
        output.WriteLine(error.Message);
        Assert.Equal(DiagnosticCodes.SynthesisNeedsBatchNorm, error.Diagnostic.Code);
        Assert.Equal((spec.File, 1, 28), (error.Diagnostic.File, error.Diagnostic.Line, error.Diagnostic.Column));
        Assert.Contains("this model has no BatchNormalization node", error.Message, StringComparison.Ordinal);
        Assert.Contains("magnitude pruning, weight-only int8/int4 ('activations': 'none') or dynamic int8 ('activations': 'dynamic')", error.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(outputPath));
    }

    [Fact]
    public void An_input_with_a_symbolic_dimension_besides_the_batch_is_refused()
    {
        var model = OnnxModel.Load(ResNet20);
        var dims = model.Proto.Graph.Input[0].Type.TensorType.Shape.Dim;
        dims[2] = new TensorShapeProto.Types.Dimension { DimParam = "height" };
        var path = Path.Combine(Dir, "symbolic.onnx");
        model.Save(path);
        var spec = SpecFiles.Load(Dir, """{ "data": { "calibration": { "synthesize": "batchnorm" } }, "steps": [ { "quantize": { "weights": "int8", "activations": "int8" } } ] }""");
        var error = Assert.Throws<CompressException>(() => CompressionPipeline.Run(path, spec, Path.Combine(Dir, "out.onnx"), measureLatency: false));
        Assert.Equal(DiagnosticCodes.SynthesisInputUnsupported, error.Diagnostic.Code);
        Assert.Contains("input 'input' has a symbolic dimension 2 ('height')", error.Message, StringComparison.Ordinal);
    }

    /// <summary>The spec's <paramref name="calibration"/> (its <c>{{calibration}}</c> the real training images) and step; returns the output.</summary>
    private string Compress(string model, string? calibration, string step, string outputName) => Compress(model, calibration, step, outputName, out _);

    private string Compress(string model, string? calibration, string step, string outputName, out CompressionReport report)
    {
        var data = calibration is null ? "" : $$"""
            "data": {{calibration.Replace("{{calibration}}", SpecFiles.Quote(FashionData.Calibration(image: true)), StringComparison.Ordinal)}},
            """;
        var spec = SpecFiles.Load(Dir, $$"""{ {{data}} "steps": [ {{step}} ] }""");
        var outputPath = Path.Combine(Dir, outputName);
        report = CompressionPipeline.Run(model, spec, outputPath, measureLatency: false);
        return outputPath;
    }

    /// <summary>Dense and compressed accuracy on the 10,000 real Fashion-MNIST test images.</summary>
    private static ComparisonMetrics Measure(string dense, string compressed)
    {
        var original = OnnxModel.LoadInterface(dense);
        var test = CalibrationSet.Load(FashionData.Test(image: true), original, "labels", null, 0);
        return ModelComparison.Compare(original, OnnxModel.Load(compressed), test, originalOnDisk: true);
    }
}
