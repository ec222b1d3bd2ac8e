using Compress.Core.Diagnostics;
using Compress.Core.Fidelity;
using Compress.Core.Onnx;
using Compress.Core.Reports;
using Compress.Core.Tests.TestSupport;
using Xunit.Abstractions;

namespace Compress.Core.Tests.RealModels;

/// <summary>
/// Every method family on models of other shapes than ours: an opset-8 image featurizer with float_data weights and
/// pooled [N, 64, 1, 1] features, a transformer encoder with a token table and an attention mask, PP-OCRv4 det (a
/// probability map), cls ([N, 2] class scores) and rec ([N, T, C] per time step), silero VAD v5 (an LSTM with a
/// state input and a sample-rate scalar, its network inside an If). Each run must pass the default fidelity floor for
/// its output kind and never grow the model; a step that cannot reach the weights says so (CMP0036).
/// </summary>
public sealed class RealModelCompressionTests(ITestOutputHelper output) : TempDirectoryTest
{
    public static TheoryData<string, string, OutputKind> Runs => new()
    {
        { "featurizer", """{ "prune": { "method": "magnitude", "sparsity": 0.5 } }""", OutputKind.Features },
        { "featurizer", """{ "prune": { "method": "obs", "sparsity": 0.5 } }""", OutputKind.Features },
        { "featurizer", """{ "quantize": { "weights": "int8", "activations": "uint8" } }""", OutputKind.Features },
        { "featurizer", """{ "quantize": { "weights": "fp16" } }""", OutputKind.Features },
        { "encoder", """{ "quantize": { "weights": "int8", "activations": "dynamic" } }""", OutputKind.Features },
        { "encoder", """{ "quantize": { "weights": "int4", "blockSize": 32 } }""", OutputKind.Features },
        { "encoder", """{ "quantize": { "weights": "int4", "method": "gptq", "blockSize": 32, "actOrder": true } }""", OutputKind.Features },
        { "encoder", """{ "quantize": { "weights": "fp16" } }""", OutputKind.Features },
        { "encoder", """{ "prune": { "method": "obs", "sparsity": 0.3 } }""", OutputKind.Features },
        { "det", """{ "quantize": { "weights": "int8", "activations": "uint8", "opTypes": ["Conv"] } }""", OutputKind.Features },
        { "det", """{ "prune": { "method": "magnitude", "sparsity": 0.3 } }""", OutputKind.Features },
        { "cls", """{ "quantize": { "weights": "int8", "activations": "uint8" } }""", OutputKind.ClassScores },
        { "cls", """{ "prune": { "method": "obs", "sparsity": 0.3 } }""", OutputKind.ClassScores },
        { "rec", """{ "quantize": { "weights": "fp16" } }""", OutputKind.ClassScores },
        { "vad", """{ "quantize": { "weights": "int8", "activations": "dynamic" } }""", OutputKind.Features },
        { "vad", """{ "quantize": { "weights": "fp16" } }""", OutputKind.Features },
    };

    [Theory]
    [MemberData(nameof(Runs))]
    public void Each_method_family_keeps_the_floor_and_never_grows_the_model(string model, string step, OutputKind kind)
    {
        var (path, data) = Model(model);
        var spec = SpecFiles.Load(Dir, $$"""{ "data": { "calibration": { "path": {{SpecFiles.Quote(data)}}, "samples": 32 } }, "steps": [ {{step}} ] }""");
        var report = CompressionPipeline.Run(path, spec, Path.Combine(Dir, "out.onnx"), measureLatency: false);
        var m = report.Metrics!;
        output.WriteLine($"{model} {step}: {report.Size.OriginalBytes:N0} → {report.Size.CompressedBytes:N0} B ({report.Size.Ratio:0.000}×); " +
            string.Join("; ", m.Outputs.Select(o => $"{o.Name} ({o.Kind}) {FidelityGate.Describe(o)}")));
        Assert.True(report.Size.CompressedBytes <= report.Size.OriginalBytes, $"{report.Size.CompressedBytes} > {report.Size.OriginalBytes}");
        Assert.Equal(new FileInfo(Path.Combine(Dir, "out.onnx")).Length, report.Size.CompressedBytes);
        Assert.Equal(kind, m.Kind);
        var unchanged = report.Warnings!.Where(w => w.Code == DiagnosticCodes.StepChangedNothing).ToList();
        if (model == "vad")
        {
            // Silero keeps its network in the branches of an If node, which the steps do not reach: said, not silent.
            Assert.Contains("inside If/Loop subgraphs", Assert.Single(unchanged).Message);
        }
        else
        {
            Assert.Empty(unchanged);
        }

        if (kind == OutputKind.ClassScores)
        {
            Assert.True(m.Agreement >= FidelityGate.AgreementFloor, $"agreement {m.Agreement}");
        }
        else
        {
            Assert.Null(m.Agreement);
            Assert.True(m.MeanCosine >= FidelityGate.CosineFloor, $"cosine {m.MeanCosine}");
        }
    }

    [Fact]
    public void Float_data_weights_are_replaced_not_kept_beside_the_new_values()
    {
        var spec = SpecFiles.Load(Dir, $$"""
        { "data": { "evaluation": { "path": {{SpecFiles.Quote(ThirdPartyModels.FeaturizerData)}} } },
          "steps": [ { "prune": { "method": "magnitude", "sparsity": 0.5, "scope": "layer" } }, { "quantize": { "weights": "fp16" } } ],
          "constraints": { "minCosine": 0.5 } }
        """);
        var source = OnnxModel.Load(ThirdPartyModels.Featurizer);
        Assert.Contains(source.Proto.Graph.Initializer, t => t.FloatData.Count > 0 && !t.HasRawData);
        var outputPath = Path.Combine(Dir, "out.onnx");
        var report = CompressionPipeline.Run(ThirdPartyModels.Featurizer, spec, outputPath, measureLatency: false);

        var written = OnnxModel.Load(outputPath);
        Assert.All(written.Proto.Graph.Initializer, t => Assert.Empty(t.FloatData));
        Assert.True(new FileInfo(outputPath).Length < new FileInfo(ThirdPartyModels.Featurizer).Length * 0.6);
        Assert.DoesNotContain(written.Proto.Graph.Input, i => written.Graph.Initializers.ContainsKey(i.Name));
        // ONNX Runtime ran the new values: the output moved (finite SQNR) but stayed close.
        Assert.InRange(report.Metrics!.SqnrDb, 5, 100);
        Assert.True(report.Metrics.MeanCosine > 0.5);
    }

    [Fact]
    public void A_step_that_would_grow_the_model_is_refused_with_both_sizes_and_writes_nothing()
    {
        // Static int8 on the activations of Add alone: Q/DQ pairs and their scales added, no weight made smaller.
        var spec = SpecFiles.Load(Dir, $$"""
        { "data": { "calibration": { "path": {{SpecFiles.Quote(ThirdPartyModels.EncoderData)}} } },
          "steps": [ { "quantize": { "weights": "int8", "activations": "uint8", "opTypes": ["Add"] } } ],
          "constraints": { "minCosine": 0 } }
        """);
        var outputPath = Path.Combine(Dir, "grown.onnx");
        var error = Assert.Throws<CompressException>(() => CompressionPipeline.Run(ThirdPartyModels.Encoder, spec, outputPath, measureLatency: false));
        output.WriteLine(error.Message);
        Assert.Equal(DiagnosticCodes.ArtifactLarger, error.Diagnostic.Code);
        Assert.Matches(@"would be [\d,]+ bytes, larger than its source \(1,483,054 bytes\)", error.Message);
        Assert.False(File.Exists(outputPath));
    }

    [Fact]
    public void A_collapsed_featurizer_fails_the_default_floor_naming_layers_and_writes_nothing()
    {
        string Spec(string constraints) => $$"""
        { "data": { "evaluation": { "path": {{SpecFiles.Quote(ThirdPartyModels.FeaturizerData)}} } },
          "steps": [ { "prune": { "method": "magnitude", "sparsity": 0.9, "scope": "layer" } } ]{{constraints}} }
        """;
        var outputPath = Path.Combine(Dir, "collapsed.onnx");
        var error = Assert.Throws<CompressException>(() => CompressionPipeline.Run(ThirdPartyModels.Featurizer, SpecFiles.Load(Dir, Spec("")), outputPath, measureLatency: false));
        output.WriteLine(error.Message);
        Assert.Equal(DiagnosticCodes.FidelityBelowFloor, error.Diagnostic.Code);
        Assert.Contains("output 'features' (features) mean cosine", error.Message);
        Assert.Contains("/Conv", error.Message); // the layers contributing most
        Assert.False(File.Exists(outputPath));

        var relaxed = CompressionPipeline.Run(ThirdPartyModels.Featurizer, SpecFiles.Load(Dir, Spec(""", "constraints": { "minCosine": 0.1 }""")), outputPath, measureLatency: false);
        Assert.True(File.Exists(outputPath));
        var cosine = relaxed.Metrics!.MeanCosine!.Value;
        Assert.InRange(cosine, 0.1, FidelityGate.CosineFloor);
        Assert.Contains(relaxed.Constraints, c => c.Name == "minCosine" && c.Met && c.Measured == cosine);
        Assert.Contains(relaxed.Warnings!, w => w.Code == DiagnosticCodes.FidelityLow);
        Assert.Contains("| features | features | [N, 64, 1, 1] |", ReportWriter.Markdown(relaxed));
    }

    [Fact]
    public void Global_magnitude_does_not_wipe_out_a_layer_whose_folded_weights_are_100x_smaller()
    {
        var spec = SpecFiles.Load(Dir, $$"""
        { "data": { "evaluation": { "path": {{SpecFiles.Quote(ThirdPartyModels.FeaturizerData)}} } },
          "steps": [ { "prune": { "method": "magnitude", "sparsity": 0.5, "scope": "global" } } ] }
        """);
        var report = CompressionPipeline.Run(ThirdPartyModels.Featurizer, spec, Path.Combine(Dir, "out.onnx"), measureLatency: false);
        foreach (var layer in report.Layers)
        {
            output.WriteLine($"{layer.Node}: {layer.Sparsity:P1}, relative error {layer.RelativeError:E2}");
        }

        var small = report.Layers.Single(l => l.Weight.StartsWith("block1.b.0", StringComparison.Ordinal));
        Assert.InRange(small.Sparsity, 0.2, 0.8);
        Assert.True(report.Metrics!.MeanCosine >= 0.95, $"cosine {report.Metrics.MeanCosine}");
    }

    /// <summary>
    /// A trained model made 100× lopsided without changing its function: conv2's weights and bias × 0.01, fc1's
    /// weights × 100 (ReLU, MaxPool and Flatten between them commute with a positive scale). A raw |w| threshold
    /// would take conv2 to its 98% cap; the scale-free score prunes it as it prunes the original.
    /// </summary>
    [Fact]
    public void Global_magnitude_prunes_a_rescaled_trained_model_as_it_prunes_the_original()
    {
        var model = OnnxModel.Load(FashionData.CnnModel);
        foreach (var (name, factor) in new[] { ("conv2.weight", 0.01f), ("conv2.bias", 0.01f), ("fc1.weight", 100f) })
        {
            var tensor = model.Graph.GetInitializer(name)!;
            using var values = Compress.Core.Torch.OnnxTorchConversion.ToTorch(model, tensor);
            model.ReplaceData(tensor, Compress.Core.Torch.OnnxTorchConversion.ToOnnx(values * factor, name));
        }

        var rescaled = Path.Combine(Dir, "cnn_rescaled.onnx");
        model.Save(rescaled);
        string Spec(string metric) => $$"""
        { "data": { "evaluation": { "path": {{SpecFiles.Quote(FashionData.Test(true))}}, "labels": "labels", "samples": 2000{{metric}} } },
          "steps": [ { "prune": { "method": "magnitude", "sparsity": 0.5, "scope": "global" } } ] }
        """;
        var original = CompressionPipeline.Run(FashionData.CnnModel, SpecFiles.Load(Dir, Spec("")), Path.Combine(Dir, "a.onnx"), measureLatency: false);
        var lopsided = CompressionPipeline.Run(rescaled, SpecFiles.Load(Dir, Spec("")), Path.Combine(Dir, "b.onnx"), measureLatency: false);
        var cosine = CompressionPipeline.Run(rescaled, SpecFiles.Load(Dir, Spec(""", "metric": "cosine" """)), Path.Combine(Dir, "c.onnx"), measureLatency: false);
        output.WriteLine($"original {original.Metrics!.CompressedAccuracy:P2}, rescaled {lopsided.Metrics!.CompressedAccuracy:P2}, logit cosine {cosine.Metrics!.MeanCosine:0.0000}");
        Assert.All(original.Layers.Zip(lopsided.Layers), p => Assert.Equal(p.First.Sparsity, p.Second.Sparsity, 3));
        Assert.InRange(lopsided.Layers.Single(l => l.Weight == "conv2.weight").Sparsity, 0.1, 0.9);
        Assert.InRange(lopsided.Metrics.CompressedAccuracy!.Value, original.Metrics.CompressedAccuracy!.Value - 0.002, original.Metrics.CompressedAccuracy.Value + 0.002);
        Assert.Equal(Compress.Core.Fidelity.OutputKind.Features, cosine.Metrics.Kind);
        Assert.True(cosine.Metrics.MeanCosine >= 0.95, $"cosine {cosine.Metrics.MeanCosine}");
    }

    [Fact]
    public void An_encoder_output_is_judged_on_real_tokens_only()
    {
        var spec = SpecFiles.Load(Dir, $$"""
        { "data": { "evaluation": { "path": {{SpecFiles.Quote(ThirdPartyModels.EncoderData)}}, "output": "last_hidden_state" } },
          "steps": [ { "quantize": { "weights": "int8", "activations": "dynamic" } } ], "constraints": { "minCosine": 0.98 } }
        """);
        var report = CompressionPipeline.Run(ThirdPartyModels.Encoder, spec, Path.Combine(Dir, "out.onnx"), measureLatency: false);
        var o = report.Metrics!.Primary;
        // Exported without constant folding, every Linear weight reaches its MatMul through a Transpose: folded into
        // the stored weight, all 12 (q, k, v, o, ff1, ff2 of two layers) are quantized.
        Assert.Contains(report.Notes, n => n.StartsWith("12 Transpose nodes on weights", StringComparison.Ordinal));
        Assert.Equal(12, report.Layers.Count(l => l.OpType == "MatMul" && l.Bits == 8));
        Assert.Equal(OutputKind.Features, o.Kind);
        Assert.Equal(new long[] { -1, 16, 64 }, o.Shape);
        Assert.True(o.MeanCosine >= 0.98 && o.P1Cosine <= o.MeanCosine);

        var wrong = Assert.Throws<CompressException>(() => CompressionPipeline.Run(ThirdPartyModels.Encoder, SpecFiles.Load(Dir, $$"""
        { "data": { "evaluation": { "path": {{SpecFiles.Quote(ThirdPartyModels.EncoderData)}}, "output": "logits" } },
          "steps": [ { "quantize": { "weights": "fp16" } } ] }
        """), Path.Combine(Dir, "out2.onnx"), measureLatency: false));
        Assert.Contains("'logits' is not a float32 output", wrong.Message);
        Assert.True(wrong.Diagnostic.Line == 1 && wrong.Diagnostic.Column > 10, $"{wrong.Diagnostic.Line},{wrong.Diagnostic.Column}"); // at data.evaluation
    }

    /// <summary>
    /// A constraint the judged output can never meet by its declared shape — agreement on pooled features [N, 64, 1, 1],
    /// on a probability map [N, 1, H, W], on a speech probability [N, 1] — is a spec error at the constraint before any
    /// step runs, not after the compression (74 s on det).
    /// </summary>
    [Theory]
    [InlineData("featurizer", "[?, 64, 1, 1]")]
    [InlineData("det", "[?, 1, ?, ?]")]
    [InlineData("vad", "[?, 1]")]
    public void Agreement_on_an_output_declared_as_features_is_refused_before_any_step(string model, string declared)
    {
        var (path, data) = Model(model);
        var spec = SpecFiles.Load(Dir, $$"""
        { "data": { "calibration": { "path": {{SpecFiles.Quote(data)}}, "samples": 16 } },
          "steps": [ { "quantize": { "weights": "fp16" } } ],
          "constraints": {
            "minAgreement": 0.99 } }
        """);
        var progress = new List<string>();
        var e = Assert.Throws<CompressException>(() => CompressionPipeline.Run(path, spec, Path.Combine(Dir, "out.onnx"), progress.Add, measureLatency: false));
        output.WriteLine(e.Message);
        Assert.Equal(Compress.Spec.SpecCodes.Inconsistent, e.Diagnostic.Code);
        Assert.Contains($"constraints.minAgreement cannot be measured on output", e.Message);
        Assert.Contains($"(features, declared {declared} by the model)", e.Message);
        Assert.Equal((4, 5), (e.Diagnostic.Line, e.Diagnostic.Column)); // at "minAgreement"
        Assert.DoesNotContain(progress, p => p.StartsWith("quantize", StringComparison.Ordinal));
        Assert.False(File.Exists(Path.Combine(Dir, "out.onnx")));
    }

    private static (string Model, string Data) Model(string name) => name switch
    {
        "featurizer" => (ThirdPartyModels.Featurizer, ThirdPartyModels.FeaturizerData),
        "encoder" => (ThirdPartyModels.Encoder, ThirdPartyModels.EncoderData),
        "det" => (ThirdPartyModels.OcrDet, ThirdPartyModels.OcrLines("ocr_det_64x320.npz", 64, 320)),
        "cls" => (ThirdPartyModels.OcrCls, ThirdPartyModels.OcrLines("ocr_cls_48x192.npz", 48, 192)),
        "rec" => (ThirdPartyModels.OcrRec, OcrStrips.Make("ocr_text_calib.npz", 64, 1)),
        "vad" => (ThirdPartyModels.Vad, ThirdPartyModels.VadChunks()),
        _ => throw new ArgumentOutOfRangeException(nameof(name)),
    };
}
