using Compress.Core.Data;
using Compress.Core.Onnx;
using Compress.Core.Tests.TestSupport;
using Microsoft.ML.OnnxRuntime;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Compress.Core.Tests.RealModels;

/// <summary>
/// The trained sentence encoder (tests/fixtures/text: vocabulary 8,192 × 128, 4 layers, trained on English text) in
/// each integer scheme, judged as an application uses it: mean-pooled sentence embeddings of the 128 held-out
/// evaluation sentences, their cosine to the original's and whether each sentence keeps its nearest neighbour.
/// </summary>
public sealed class TextEncoderCompressionTests(ITestOutputHelper output) : TempDirectoryTest
{
    private static string Fixture(string name) => Path.Combine(TestData.RepoRoot, "tests", "fixtures", "text", name);

    private static string Spec(string step) => $$"""
        { "data": { "calibration": { "path": {{SpecFiles.Quote(Fixture("calibration.npz"))}} },
                    "evaluation": { "path": {{SpecFiles.Quote(Fixture("evaluation.npz"))}} } },
          "steps": [ { {{step}} } ] }
        """;

    [Theory]
    [InlineData("dynamic", """ "quantize": { "weights": "int8", "activations": "dynamic" } """, 0.26, 0.99, 0.95)]
    [InlineData("int4", """ "quantize": { "weights": "int4", "activations": "none" } """, 0.17, 0.98, 0.75)]
    [InlineData("static", """ "quantize": { "weights": "int8", "activations": "int8" } """, 0.267, 0.98, 0.9)]
    public void Each_scheme_keeps_the_sentence_embeddings(string name, string step, double maxRatio, double minCosine, double minNeighbours)
    {
        var path = Path.Combine(Dir, name + ".onnx");
        var report = CompressionPipeline.Run(Fixture("text_encoder.onnx"), SpecFiles.Load(Dir, Spec(step)), path, measureLatency: false);
        var (cosine, neighbours) = Embeddings(path);
        output.WriteLine($"{name}: {report.Size.CompressedBytes:N0} bytes ({report.Size.Ratio:0.000}x), pooled cosine {cosine:0.0000}, nearest neighbour kept {neighbours:P1}, token cosine {report.Metrics!.Primary.MeanCosine:0.0000}");
        // int4 on token sequences: form 'auto' stores the codes for ONNX Runtime to unpack at load (no slower than float32).
        Assert.Contains(report.Layers, l => l.Weight == "tokens.weight" && l.Format.Contains(name == "int4" ? "unpacked at load" : "GatherBlockQuantized", StringComparison.Ordinal));
        // The export's 115 int64 shape constants (12 values) and 16 float scalars (4 values); static int8 also its zero
        // points; int4 also the chains' shapes and constants (UnpackedBlockTests).
        var repeated = name switch { "static" => "210 ", "int4" => "", _ => "116 " };
        Assert.Contains(report.Notes, n => n.StartsWith(repeated, StringComparison.Ordinal) && n.Contains("repeated constants stored once", StringComparison.Ordinal));
        Assert.True(report.Size.Ratio <= maxRatio, $"{report.Size.Ratio:0.000}x");
        Assert.True(cosine >= minCosine, $"pooled cosine {cosine:0.0000}");
        Assert.True(neighbours >= minNeighbours, $"nearest neighbour kept {neighbours:P1}");
    }

    /// <summary>
    /// int4 on token sequences: form 'auto' multiplies in int8 (the codes turned into per-column int8 at load, read by
    /// DynamicQuantizeMatMul), the embeddings within the int8 step of the float form's, which is the same codes as float32.
    /// </summary>
    [Fact]
    public void The_int4_default_multiplies_in_int8_and_keeps_the_float_forms_embeddings()
    {
        var unpacked = Path.Combine(Dir, "float.onnx");
        var path = Path.Combine(Dir, "auto.onnx");
        var floatReport = CompressionPipeline.Run(Fixture("text_encoder.onnx"), SpecFiles.Load(Dir, Spec(""" "quantize": { "weights": "int4", "activations": "none", "form": "float" } """)), unpacked, measureLatency: false);
        var report = CompressionPipeline.Run(Fixture("text_encoder.onnx"), SpecFiles.Load(Dir, Spec(""" "quantize": { "weights": "int4", "activations": "none" } """)), path, measureLatency: false);
        var (floatCosine, floatNeighbours) = Embeddings(unpacked);
        var (cosine, neighbours) = Embeddings(path);
        output.WriteLine($"float form: {floatReport.Size.CompressedBytes:N0} bytes, pooled cosine {floatCosine:0.0000}, nearest neighbour kept {floatNeighbours:P1}");
        output.WriteLine($"auto (int8): {report.Size.CompressedBytes:N0} bytes ({report.Size.Ratio:0.000}x), pooled cosine {cosine:0.0000}, nearest neighbour kept {neighbours:P1}");
        var weights = report.Layers.Where(l => l.OpType == "MatMul").ToList();
        Assert.Equal(24, weights.Count);
        Assert.All(weights, l => Assert.Contains("as int8 at load", l.Format, StringComparison.Ordinal));
        Assert.Contains(report.Layers, l => l.Weight == "tokens.weight" && l.Format.Contains("unpacked at load", StringComparison.Ordinal));
        Assert.Equal(24, OnnxModel.Load(path).Graph.Nodes.Count(n => n.OpType == "DynamicQuantizeMatMul"));
        Assert.True(report.Size.Ratio <= 0.17, $"{report.Size.Ratio:0.000}x");
        Assert.True(Math.Abs(cosine - floatCosine) <= 0.002, $"pooled cosine {cosine:0.0000} vs {floatCosine:0.0000}");
        Assert.True(neighbours >= floatNeighbours - 0.05, $"nearest neighbour kept {neighbours:P1} vs {floatNeighbours:P1}");
    }

    /// <summary>WoodFisher's gradients run through the TorchSharp executor on the BERT graph (Erf, Where, Expand, ConstantOfShape, masks).</summary>
    [Fact]
    public void Woodfisher_prunes_the_encoder_by_half()
    {
        var path = Path.Combine(Dir, "woodfisher.onnx");
        var spec = SpecFiles.Load(Dir, $$"""
            { "data": { "calibration": { "path": {{SpecFiles.Quote(Fixture("calibration.npz"))}}, "samples": 64 },
                        "evaluation": { "path": {{SpecFiles.Quote(Fixture("evaluation.npz"))}} } },
              "steps": [ { "prune": { "method": "woodfisher", "sparsity": 0.5 } } ], "constraints": { "minCosine": 0.9 } }
            """);
        var report = CompressionPipeline.Run(Fixture("text_encoder.onnx"), spec, path, measureLatency: false);
        var (cosine, neighbours) = Embeddings(path);
        output.WriteLine($"woodfisher 50%: sparsity {report.Size.OverallSparsity:P1}, pooled cosine {cosine:0.0000}, nearest neighbour kept {neighbours:P1}");
        var pruned = report.Layers.Where(l => l.OpType == "MatMul").ToList();
        Assert.Equal(24, pruned.Count);
        Assert.InRange(pruned.Sum(l => l.Sparsity * l.Parameters) / pruned.Sum(l => l.Parameters), 0.49, 0.505);
        Assert.True(cosine >= 0.95, $"pooled cosine {cosine:0.0000}");
    }

    /// <summary>Mean cosine of the masked-mean-pooled embeddings (compressed vs original), and the share of sentences whose nearest other sentence stays the same.</summary>
    internal static (double Cosine, double Neighbours) Embeddings(string compressed)
    {
        Compress.Core.Torch.TorchRuntime.EnsureLoaded();
        using var scope = NewDisposeScope();
        var original = Pooled(Fixture("text_encoder.onnx"));
        var ours = Pooled(compressed);
        var cosine = (original * ours).sum(1).mean().item<float>();
        static Tensor Nearest(Tensor e)
        {
            var similarity = e.matmul(e.t()) - eye(e.shape[0]) * 4; // a sentence is not its own neighbour
            return similarity.argmax(1);
        }

        var kept = Nearest(original).eq(Nearest(ours)).to_type(ScalarType.Float32).mean().item<float>();
        return (cosine, kept);
    }

    private static Tensor Pooled(string model)
    {
        var arrays = ArrayFile.Read(Fixture("evaluation.npz"));
        var ids = arrays["input_ids"].ToInt64();
        var mask = arrays["attention_mask"].ToInt64();
        long[] shape = [.. arrays["input_ids"].Shape];
        using var session = OrtHarness.Open(model);
        using var inputIds = OrtValue.CreateTensorValueFromMemory(ids, shape);
        using var attentionMask = OrtValue.CreateTensorValueFromMemory(mask, shape);
        using var runOptions = new RunOptions();
        using var results = session.Run(runOptions, ["input_ids", "attention_mask"], [inputIds, attentionMask], ["last_hidden_state"]);
        var hidden = tensor(results[0].GetTensorDataAsSpan<float>().ToArray()).reshape(results[0].GetTensorTypeAndShape().Shape);
        var weights = tensor(mask).reshape(shape).to_type(ScalarType.Float32).unsqueeze(2);
        return nn.functional.normalize((hidden * weights).sum(1), p: 2, dim: 1);
    }
}
