using Compress.Core.Calibration;
using Compress.Core.Evaluation;
using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Passes.Graph;
using Compress.Core.Passes.Quantization;
using Compress.Core.Tests.TestSupport;
using Compress.Core.Torch;
using Xunit.Abstractions;

namespace Compress.Core.Tests.Passes.Quantization;

/// <summary>
/// Static int8 on transformer encoders (issue 14): the default step keeps LayerNorm, attention Softmax, GELU and the
/// MatMul bias Adds float and puts every MatMul on int8 inputs; SmoothQuant (<c>smoothing</c>) moves LayerNorm output
/// scales into the weights without changing the float model, and rescues a LayerNorm output with outlier channels.
/// Floors are the measured figures less a margin (docs/cli/run.md has the figures).
/// </summary>
public sealed class TransformerStaticQuantizationTests(ITestOutputHelper output) : TempDirectoryTest
{
    private static string Text(string name) => Path.Combine(TestData.RepoRoot, "tests", "fixtures", "text", name);

    /// <summary>Small random-weight encoder (measured: cosine 1.0000, SQNR 41.5 dB) and the trained text encoder (1.0000, 41.4 dB).</summary>
    [Theory]
    [InlineData("encoder", 5, 2, 2, 12, 16, 38.0)]
    [InlineData("text", 9, 4, 4, 24, 32, 38.0)]
    public void The_default_static_step_keeps_layernorm_softmax_and_gelu_float_and_quantizes_every_matmul(
        string model, int layerNorms, int softmaxes, int gelus, int biases, int matmuls, double minSqnrDb)
    {
        var (path, calibration, evaluation) = model == "text"
            ? (Text("text_encoder.onnx"), Text("calibration.npz"), Text("evaluation.npz"))
            : (ThirdPartyModels.Encoder, ThirdPartyModels.EncoderData, ThirdPartyModels.EncoderData);
        var outputPath = Path.Combine(Dir, "static.onnx");
        var report = CompressionPipeline.Run(path, Spec(calibration, evaluation, ""), outputPath, measureLatency: false);
        output.WriteLine(string.Join("\n", report.Notes));
        output.WriteLine($"cosine {report.Metrics!.MeanCosine:0.0000}, SQNR {report.Metrics.SqnrDb:0.0} dB");

        var graph = OnnxModel.Load(outputPath).Graph;
        var dequantized = graph.Nodes.Where(n => n.OpType == "DequantizeLinear").Select(n => n.Output[0]).ToHashSet();
        // LayerNorm, Softmax, the GELU chain, the mask, residual and bias Adds: no input comes through a Q/DQ pair.
        var floatOps = graph.Nodes.Where(n => n.OpType is "LayerNormalization" or "Softmax" or "Erf" or "Add" or "Sub" or "Mul" or "Div").ToList();
        Assert.Equal(layerNorms, floatOps.Count(n => n.OpType == "LayerNormalization"));
        Assert.All(floatOps, n => Assert.DoesNotContain(n.Input, dequantized.Contains));
        // Every MatMul (Q/K/V/O, FFN, and Q·Kᵀ and scores·V between two activations) reads int8 on both inputs.
        var products = graph.Nodes.Where(n => n.OpType == "MatMul").ToList();
        Assert.Equal(matmuls, products.Count);
        Assert.All(products, m => Assert.All(m.Input, i => Assert.Contains(i, dequantized)));

        Assert.Contains(report.Notes, n => n.StartsWith($"static: {layerNorms} LayerNorms kept float", StringComparison.Ordinal));
        Assert.Contains(report.Notes, n => n.StartsWith($"static: {softmaxes} attention Softmaxes kept float", StringComparison.Ordinal));
        Assert.Contains(report.Notes, n => n.StartsWith($"static: {gelus} GELUs kept float", StringComparison.Ordinal));
        Assert.Contains(report.Notes, n => n.StartsWith($"static: {biases} MatMul bias Adds kept float", StringComparison.Ordinal));
        Assert.True(report.Metrics.MeanCosine >= 0.999, $"cosine {report.Metrics.MeanCosine}");
        Assert.True(report.Metrics.SqnrDb >= minSqnrDb, $"SQNR {report.Metrics.SqnrDb:0.0} dB");
    }

    [Fact]
    public void Op_types_named_in_the_spec_are_quantized_as_named()
    {
        var outputPath = Path.Combine(Dir, "named.onnx");
        var report = CompressionPipeline.Run(ThirdPartyModels.Encoder,
            Spec(ThirdPartyModels.EncoderData, ThirdPartyModels.EncoderData, """, "opTypes": ["MatMul", "Add"]"""), outputPath, measureLatency: false);
        var graph = OnnxModel.Load(outputPath).Graph;
        var dequantized = graph.Nodes.Where(n => n.OpType == "DequantizeLinear").Select(n => n.Output[0]).ToHashSet();
        Assert.DoesNotContain(report.Notes, n => n.Contains("kept float", StringComparison.Ordinal));
        Assert.Contains(graph.Nodes, n => n.OpType == "Add" && n.Input.Any(dequantized.Contains)); // residual, mask and bias Adds too
    }

    [Fact]
    public void Smoothing_alone_moves_layernorm_scales_into_the_weights_and_keeps_the_float_output()
    {
        TorchRuntime.EnsureLoaded();
        var model = OnnxModel.Load(ThirdPartyModels.Encoder);
        TransposedWeights.Fold(model); // as the pipeline does first: the weights become MatMul initializers
        var data = CalibrationSet.Load(ThirdPartyModels.EncoderData, model, null, null, 0);
        var before = Outputs(model, data);
        var gamma = Values(model, "ln.weight");
        var query = Values(model, "layers.0.q.weight");

        var notes = ActivationSmoothing.Apply(model, FloatIslands.Find(model.Graph), data, 0.5);
        output.WriteLine(string.Join("\n", notes));

        Assert.Contains("smoothing (α 0.5): 4 LayerNorm outputs", notes.Single());
        Assert.Contains("into 8 MatMul/Gemm weights; 4 other readers (residual Adds)", notes.Single());
        Assert.Contains("1 skipped: 'last_hidden_state' (it is a graph output)", notes.Single());
        var smoothed = Values(model, "ln.weight");
        Assert.True(gamma.Zip(smoothed).Max(p => Math.Abs(p.First - p.Second) / Math.Abs(p.First)) > 0.5, "γ unchanged");
        Assert.NotEqual(query, Values(model, "layers.0.q.weight"));
        var after = Outputs(model, data);
        Assert.Equal(before.Length, after.Length);
        var largest = before.Zip(after).Max(p => Math.Abs(p.First - p.Second));
        output.WriteLine($"max |difference| {largest:E2}");
        Assert.True(largest <= 1e-4, $"max |difference| {largest:E2}");
    }

    /// <summary>
    /// The encoder given outlier channels as trained transformers have them: γ and β of every inner LayerNorm × 50 on
    /// three channels, the rows of the weights reading them ÷ 50 (the MatMuls' products unchanged). One int8 scale for
    /// that output leaves the other channels a few levels; smoothing gives them back (measured: the second FFN's input
    /// SQNR 9 dB plain, 36 dB smoothed on the text encoder).
    /// </summary>
    [Fact]
    public void Smoothing_rescues_a_layernorm_output_with_outlier_channels()
    {
        TorchRuntime.EnsureLoaded();
        var model = OnnxModel.Load(ThirdPartyModels.Encoder);
        TransposedWeights.Fold(model);
        int[] channels = [3, 40, 61];
        foreach (var norm in model.Graph.Nodes.Where(n => n.OpType == "LayerNormalization" && !model.Graph.IsGraphOutput(n.Output[0])).ToList())
        {
            Scale(model, norm.Input[1], 50, channels);
            Scale(model, norm.Input[2], 50, channels);
            foreach (var reader in model.Graph.GetConsumers(norm.Output[0]).Where(r => r.OpType == "MatMul"))
            {
                Scale(model, reader.Input[1], 1 / 50f, channels);
            }
        }

        var lopsided = Path.Combine(Dir, "outliers.onnx");
        model.Save(lopsided);
        const string inner = "/layers.1/ff1/Add_output_0"; // the second layer's FFN, reading a smoothed LayerNorm
        var plain = Path.Combine(Dir, "plain.onnx");
        var smooth = Path.Combine(Dir, "smooth.onnx");
        CompressionPipeline.Run(lopsided, Spec(ThirdPartyModels.EncoderData, ThirdPartyModels.EncoderData, ""), plain, measureLatency: false);
        var report = CompressionPipeline.Run(lopsided, Spec(ThirdPartyModels.EncoderData, ThirdPartyModels.EncoderData, """, "smoothing": 0.5"""), smooth, measureLatency: false);
        Assert.Contains(report.Notes, n => n.StartsWith("smoothing (α 0.5): 4 LayerNorm outputs", StringComparison.Ordinal));

        var data = CalibrationSet.Load(ThirdPartyModels.EncoderData, model, null, null, 0);
        var reference = Outputs(model, data, inner);
        double Sqnr(string path)
        {
            var values = Outputs(OnnxModel.Load(path), data, inner);
            var noise = reference.Zip(values).Sum(p => (double)(p.First - p.Second) * (p.First - p.Second));
            return 10 * Math.Log10(reference.Sum(v => (double)v * v) / noise);
        }

        var (before, after) = (Sqnr(plain), Sqnr(smooth));
        output.WriteLine($"{inner}: SQNR {before:0.0} dB plain, {after:0.0} dB smoothed");
        Assert.True(after >= before + 10, $"{before:0.0} dB plain, {after:0.0} dB smoothed");
    }

    private Compress.Spec.CompressionSpec Spec(string calibration, string evaluation, string extra) => SpecFiles.Load(Dir, $$"""
        { "data": { "calibration": { "path": {{SpecFiles.Quote(calibration)}} }, "evaluation": { "path": {{SpecFiles.Quote(evaluation)}} } },
          "steps": [ { "quantize": { "weights": "int8", "activations": "int8"{{extra}} } } ], "constraints": { "minCosine": 0.9 } }
        """);

    private static float[] Values(OnnxModel model, string name)
    {
        using var data = model.OpenTensorData(model.Graph.GetInitializer(name)!);
        return data.As<float>().ToArray();
    }

    /// <summary>Multiplies the given channels (axis 0: γ, β, or the rows of a MatMul weight) by <paramref name="factor"/>.</summary>
    private static void Scale(OnnxModel model, string name, float factor, int[] channels)
    {
        var tensor = model.Graph.GetInitializer(name)!;
        using var values = model.ToTorch(tensor);
        var index = TorchSharp.torch.tensor(channels.Select(c => (long)c).ToArray());
        var scaled = values.clone();
        scaled.index_copy_(0, index, values.index_select(0, index) * factor);
        model.ReplaceData(tensor, scaled.ToOnnx(name));
    }

    /// <summary>The named output (default: the model's first) over all samples, flattened.</summary>
    private static float[] Outputs(OnnxModel model, CalibrationSet data, string? tensor = null)
    {
        var values = new List<float>();
        using var runner = tensor is null ? new OrtModelRunner(model) : OrtModelRunner.Exposing(model, [tensor]);
        var name = tensor ?? runner.OutputNames[0];
        runner.Run(data, 64, (_, _, outputs) => values.AddRange(outputs[name].GetTensorDataAsSpan<float>().ToArray()), [name]);
        return [.. values];
    }
}
