using Compress.Core.Data;
using Compress.Core.Diagnostics;
using Compress.Core.StateDicts;
using Compress.Core.Tests.TestSupport;
using Compress.Core.Torch;
using Compress.Runtime.TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Compress.Core.Tests.StateDicts;

/// <summary>
/// The TorchScript fixtures (tests/fixtures/torchscript, trained and scripted with PyTorch) compressed and checked on
/// the 10,000 Fashion-MNIST test images; the artifact reloads with torch.jit.load and gives the measured accuracy.
/// </summary>
public sealed class TorchScriptTests(ITestOutputHelper output) : TempDirectoryTest
{
    [Theory]
    [InlineData("ts_mlp.pt", 0.8882, """{ "quantize": { "weights": "int8", "activations": "none" } }""", 0.005, 0.30)]
    [InlineData("ts_cnn.pt", 0.9098, """{ "quantize": { "weights": "int8", "activations": "none" } }""", 0.005, 0.30)]
    [InlineData("ts_mlp.pt", 0.8882, """{ "prune": { "sparsity": 0.5 } }""", 0.01, 1.01)]
    [InlineData("ts_cnn.pt", 0.9098, """{ "prune": { "sparsity": 0.5 } }""", 0.01, 1.01)]
    public void The_fixtures_keep_their_accuracy(string fixture, double published, string step, double maxDrop, double maxRatio)
    {
        var report = Compress(fixture, step);
        var m = report.Metrics!;
        output.WriteLine($"{fixture} {step}: {report.Size.OriginalBytes:N0} → {report.Size.CompressedBytes:N0} B ({report.Size.Ratio:0.000}×), accuracy {m.OriginalAccuracy:P2} → {m.CompressedAccuracy:P2}");
        Assert.Equal(10_000, m.Samples);
        Assert.Equal(published, m.OriginalAccuracy!.Value, 4);
        Assert.True(m.AccuracyDrop <= maxDrop, $"accuracy {m.OriginalAccuracy:P2} → {m.CompressedAccuracy:P2}");
        Assert.True(report.Size.Ratio <= maxRatio, $"size ratio {report.Size.Ratio:0.000}");

        // The artifact is plain TorchScript: it reloads (and, cast to float32, computes what was measured).
        using var model = TorchScriptModel.Load(report.Output);
        var data = ArrayFile.Read(FashionData.Normalized(test: true));
        var x = tensor(data["input"].As<float>()[..(1000 * 784)].ToArray()).reshape(1000, 1, 28, 28);
        var labels = tensor(data["labels"].ToInt64()[..1000]);
        var accuracy = model.Forward(x).argmax(1).eq(labels).to_type(ScalarType.Float64).mean().item<double>();
        Assert.InRange(accuracy, m.CompressedAccuracy!.Value - 0.03, m.CompressedAccuracy.Value + 0.03);
    }

    [Fact]
    public void Snip_runs_through_the_scripted_module()
    {
        var report = Compress("ts_mlp.pt", """{ "prune": { "method": "snip", "sparsity": 0.3 } }""");
        Assert.InRange(report.Size.OverallSparsity, 0.28, 0.31);
        Assert.True(report.Metrics!.AccuracyDrop <= 0.03, $"accuracy {report.Metrics.CompressedAccuracy:P2}");
    }

    [Fact]
    public void Woodfisher_runs_through_the_scripted_module_and_beats_magnitude()
    {
        const string relaxed = """, "constraints": { "minAgreement": 0 }"""; // both collapse at 90%: measured, not refused
        var magnitude = Compress("ts_mlp.pt", """{ "prune": { "sparsity": 0.9 } }""", relaxed);
        var woodfisher = Compress("ts_mlp.pt", """{ "prune": { "method": "woodfisher", "sparsity": 0.9 } }""", relaxed);
        output.WriteLine($"90%: magnitude {magnitude.Metrics!.CompressedAccuracy:P2}, woodfisher {woodfisher.Metrics!.CompressedAccuracy:P2}");
        Assert.InRange(woodfisher.Size.OverallSparsity, 0.89, 0.905);
        Assert.True(woodfisher.Metrics.CompressedAccuracy > magnitude.Metrics.CompressedAccuracy + 0.05);
    }

    [Fact]
    public void Same_inputs_give_the_same_archive_bytes()
    {
        var first = File.ReadAllBytes(Compress("ts_mlp.pt", """{ "quantize": { "weights": "int8", "activations": "none" } }""").Output);
        var second = File.ReadAllBytes(Compress("ts_mlp.pt", """{ "quantize": { "weights": "int8", "activations": "none" } }""").Output);
        Assert.Equal(first, second); // the archive's root folder was once a random temporary name
    }

    [Fact]
    public void An_unmet_constraint_writes_nothing()
    {
        var error = Assert.Throws<CompressException>(() => Compress("ts_mlp.pt", """{ "prune": { "sparsity": 0.97 } }""", """, "constraints": { "maxAccuracyDrop": 0.01 }"""));
        Assert.Equal(DiagnosticCodes.ConstraintNotMet, error.Diagnostic.Code);
        Assert.False(File.Exists(Path.Combine(Dir, "out.pt")));
    }

    /// <summary>As for ONNX: without data the report warns that the result was not checked on real data, and constraints are a spec error.</summary>
    [Fact]
    public void Without_data_fidelity_is_not_measured_and_constraints_are_refused()
    {
        TorchRuntime.EnsureLoaded();
        var (model, outputPath) = (FashionData.TorchScriptFixture("ts_mlp.pt"), Path.Combine(Dir, "out.pt"));
        var report = TorchScriptCompressor.Run(model, SpecFiles.Load(Dir, """{ "steps": [ { "quantize": { "weights": "fp16" } } ] }"""), outputPath);
        Assert.Null(report.Metrics);
        Assert.Contains(report.Warnings!, w => w.Code == DiagnosticCodes.NotCheckedOnRealData); // CMP0080: not checked on real data

        File.Delete(outputPath);
        var error = Assert.Throws<CompressException>(() => TorchScriptCompressor.Run(model,
            SpecFiles.Load(Dir, """{ "steps": [ { "quantize": { "weights": "fp16" } } ], "constraints": { "minCosine": 0.9 } }"""), outputPath));
        Assert.Equal(global::Compress.Spec.SpecCodes.Inconsistent, error.Diagnostic.Code);
        Assert.Contains("constraints need evaluation or calibration data", error.Message);
        Assert.False(File.Exists(outputPath));
    }

    private Compress.Core.Reports.CompressionReport Compress(string fixture, string step, string extra = "")
    {
        TorchRuntime.EnsureLoaded();
        var spec = SpecFiles.Load(Dir, $$"""
            { "data": { "calibration": { "path": {{SpecFiles.Quote(FashionData.Normalized(test: false))}}, "samples": 512 },
                        "evaluation": { "path": {{SpecFiles.Quote(FashionData.Normalized(test: true))}}, "labels": "labels" } },
              "steps": [ {{step}} ]{{extra}} }
            """);
        return TorchScriptCompressor.Run(FashionData.TorchScriptFixture(fixture), spec, Path.Combine(Dir, "out.pt"), output.WriteLine);
    }
}
