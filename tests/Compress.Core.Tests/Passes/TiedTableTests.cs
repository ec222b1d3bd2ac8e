using Compress.Core.Data;
using Compress.Core.Onnx;
using Compress.Core.Tests.TestSupport;
using Microsoft.ML.OnnxRuntime;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Compress.Core.Tests.Passes;

/// <summary>
/// A token table tied to its output projections (tests/fixtures/tied: 512 × 64, read by a Gather, by a MatMul through a
/// Transpose and by a Gemm with transB), in every integer scheme: quantized once, the GatherBlockQuantized codes read by
/// both MatMulNBits projections, loaded and run by ONNX Runtime (optimized or not), close to the original's logits, and
/// the same bytes on a second run.
/// </summary>
public sealed class TiedTableTests(ITestOutputHelper output) : TempDirectoryTest
{
    private static string Fixture(string name) => Path.Combine(TestData.RepoRoot, "tests", "fixtures", "tied", name);

    private static string Spec(string quantize) => $$"""
        { "data": { "calibration": { "path": {{SpecFiles.Quote(Fixture("tied_data.npz"))}} },
                    "evaluation": { "path": {{SpecFiles.Quote(Fixture("tied_data.npz"))}} } },
          "steps": [ { "quantize": { {{quantize}} } } ] }
        """;

    [Theory]
    [InlineData("dynamic", """ "weights": "int8", "activations": "dynamic" """, 8, 0.29, 0.999)]
    [InlineData("static", """ "weights": "int8", "activations": "int8" """, 8, 0.31, 0.995)]
    [InlineData("int8-weights", """ "weights": "int8", "activations": "none", "form": "kernel" """, 8, 0.29, 0.999)]
    [InlineData("int4", """ "weights": "int4", "activations": "none", "form": "kernel" """, 4, 0.18, 0.98)]
    [InlineData("int4-asymmetric", """ "weights": "int4", "activations": "none", "method": "rtn", "symmetric": false, "form": "kernel" """, 4, 0.18, 0.98)]
    public void The_table_is_quantized_once_and_read_by_the_gather_and_both_projections(string scheme, string quantize, int bits, double maxRatio, double minCosine)
    {
        var first = Path.Combine(Dir, "first.onnx");
        var report = CompressionPipeline.Run(Fixture("tied_encoder.onnx"), SpecFiles.Load(Dir, Spec(quantize)), first, measureLatency: false);
        var (cosine, top1, firstCosine, firstTop1) = Fidelity(first, GraphOptimizationLevel.ORT_ENABLE_ALL);
        output.WriteLine($"{scheme}: {report.Size.CompressedBytes:N0} bytes ({report.Size.Ratio:0.000}x); logits cosine {cosine:0.0000}, top-1 kept {top1:P1}; "
            + $"first-position logits cosine {firstCosine:0.0000}, top-1 kept {firstTop1:P1}");

        var table = Assert.Single(report.Layers, l => l.Weight == "tokens.weight");
        Assert.Equal(bits, table.Bits);
        Assert.StartsWith($"int{bits} GatherBlockQuantized", table.Format);
        Assert.Contains(report.Notes, n => n.StartsWith("embeddings: 'tokens.weight' quantized once for its 1 Gather and its 2 tied output projections", StringComparison.Ordinal));

        // One copy of the codes: GatherBlockQuantized reads them, both MatMulNBits through one Reshape; the scales likewise through one Cast.
        var graph = OnnxModel.Load(first).Graph;
        Assert.Null(graph.GetInitializer("tokens.weight"));
        Assert.DoesNotContain(graph.Nodes, n => n.OpType is "Transpose" or "Gemm" && n.Input.Contains("tokens.weight"));
        var gather = Assert.Single(graph.Nodes, n => n.OpType == "GatherBlockQuantized");
        var projections = graph.Nodes.Where(n => n.OpType == "MatMulNBits" && graph.GetProducer(n.Input[1])?.OpType == "Reshape").ToList();
        Assert.Equal(2, projections.Count);
        Assert.All(projections, p =>
        {
            Assert.Equal(gather.Input[0], graph.GetProducer(p.Input[1])!.Input[0]);
            Assert.Equal(gather.Input[2], graph.GetProducer(p.Input[2])!.Input[0]);
            Assert.Equal(gather.Input.Count > 3 ? gather.Input[3] : null, p.Input.Count > 3 ? p.Input[3] : null);
            Assert.Equal(bits, p.Int("bits", 0));
        });
        Assert.Equal(512 * 64 * bits / 8, graph.GetInitializer(gather.Input[0])!.RawData.Length);

        Assert.True(report.Size.Ratio <= maxRatio, $"{report.Size.Ratio:0.000}x");
        Assert.True(cosine >= minCosine && firstCosine >= minCosine, $"logits cosine {cosine:0.0000} / {firstCosine:0.0000}");
        Assert.True(top1 >= 0.95 && firstTop1 >= 0.95, $"top-1 kept {top1:P1} / {firstTop1:P1}");

        // ONNX Runtime without its load-time folding runs the Reshape and Cast itself: the same logits.
        var unoptimized = Fidelity(first, GraphOptimizationLevel.ORT_DISABLE_ALL);
        Assert.Equal(cosine, unoptimized.Cosine, 4);

        var second = Path.Combine(Dir, "second.onnx");
        CompressionPipeline.Run(Fixture("tied_encoder.onnx"), SpecFiles.Load(Dir, Spec(quantize)), second, measureLatency: false);
        Assert.Equal(File.ReadAllBytes(first), File.ReadAllBytes(second));
    }

    /// <summary>int4 blocks of 128 on rows 64 wide: no layout both kernels share, so one int8 table behind a DequantizeLinear serves all.</summary>
    [Fact]
    public void Blocks_wider_than_the_row_fall_back_to_one_int8_table_for_every_reader()
    {
        var path = Path.Combine(Dir, "wide.onnx");
        var report = CompressionPipeline.Run(Fixture("tied_encoder.onnx"),
            SpecFiles.Load(Dir, Spec(""" "weights": "int4", "activations": "none", "method": "rtn", "blockSize": 128, "form": "kernel" """)), path, measureLatency: false);
        Assert.Contains(report.Notes, n => n.StartsWith("embeddings: 'tokens.weight' (tied to 2 output projections) stored once as int8 with a scale per row", StringComparison.Ordinal));
        Assert.Contains(report.Layers, l => l.Weight == "tokens.weight" && l.Bits == 8);
        var graph = OnnxModel.Load(path).Graph;
        var dq = Assert.Single(graph.Nodes, n => n.OpType == "DequantizeLinear");
        Assert.Equal(3, graph.GetConsumers(dq.Output[0]).Count); // the Gather, the Transpose and the Gemm
        var (cosine, top1, _, _) = Fidelity(path, GraphOptimizationLevel.ORT_ENABLE_ALL);
        output.WriteLine($"int8 fallback: {report.Size.CompressedBytes:N0} bytes ({report.Size.Ratio:0.000}x); logits cosine {cosine:0.0000}, top-1 kept {top1:P1}");
        Assert.True(cosine >= 0.999, $"logits cosine {cosine:0.0000}");
    }

    /// <summary>
    /// Weight-only with the table in the float form (the default 'auto' on these token sequences): the table stored once as packed codes
    /// whose chain rebuilds 'tokens.weight' under its own name, so the Gather, the Transpose and the Gemm read it
    /// unchanged; no MatMulNBits or GatherBlockQuantized; ONNX Runtime's optimized graph holds none of the chain's ops
    /// (folded at load); close logits, with and without optimization; the same bytes on a second run.
    /// </summary>
    [Theory]
    // The default 'auto' also writes the int8 form's column scales and re-quantizing nodes: about 1.5 KB on this 205 KB model.
    [InlineData("int4", """ "weights": "int4", "activations": "none" """, 4, 0.196, 0.98)]
    [InlineData("int4-asymmetric", """ "weights": "int4", "activations": "none", "method": "rtn", "symmetric": false, "form": "float" """, 4, 0.19, 0.98)]
    [InlineData("int8-weights", """ "weights": "int8", "activations": "none" """, 8, 0.30, 0.999)]
    public void The_float_form_rebuilds_the_shared_table_at_load(string scheme, string quantize, int bits, double maxRatio, double minCosine)
    {
        var first = Path.Combine(Dir, "first.onnx");
        var report = CompressionPipeline.Run(Fixture("tied_encoder.onnx"), SpecFiles.Load(Dir, Spec(quantize)), first, measureLatency: false);
        var (cosine, top1, firstCosine, firstTop1) = Fidelity(first, GraphOptimizationLevel.ORT_ENABLE_ALL);
        output.WriteLine($"{scheme} float form: {report.Size.CompressedBytes:N0} bytes ({report.Size.Ratio:0.000}x); logits cosine {cosine:0.0000}, top-1 kept {top1:P1}; "
            + $"first-position logits cosine {firstCosine:0.0000}, top-1 kept {firstTop1:P1}");

        var table = Assert.Single(report.Layers, l => l.Weight == "tokens.weight");
        Assert.StartsWith($"int{bits} block ", table.Format);
        Assert.Contains("unpacked at load", table.Format, StringComparison.Ordinal);
        Assert.Contains(report.Notes, n => n.StartsWith("weight-only: ", StringComparison.Ordinal) && n.Contains("1 table stored as packed codes that ONNX Runtime unpacks to float32 at load", StringComparison.Ordinal));

        var graph = OnnxModel.Load(first).Graph;
        Assert.Null(graph.GetInitializer("tokens.weight"));
        var rebuilt = graph.GetProducer("tokens.weight");
        Assert.NotNull(rebuilt);
        Assert.Equal(3, graph.GetConsumers("tokens.weight").Count); // the Gather, the Transpose and the Gemm, as in the source
        Assert.DoesNotContain(graph.Nodes, n => n.OpType is "MatMulNBits" or "GatherBlockQuantized");
        Assert.Equal(512 * 64 * bits / 8, graph.GetInitializer($"tokens.weight_int{bits}")!.RawData.Length); // one copy of the codes
        Assert.Empty(Compress.Core.Tests.Passes.Quantization.UnpackedBlockTests.OpsLeftAfterLoading(first, Dir));

        Assert.True(report.Size.Ratio <= maxRatio, $"{report.Size.Ratio:0.000}x");
        Assert.True(cosine >= minCosine && firstCosine >= minCosine, $"logits cosine {cosine:0.0000} / {firstCosine:0.0000}");
        Assert.True(top1 >= 0.95 && firstTop1 >= 0.95, $"top-1 kept {top1:P1} / {firstTop1:P1}");
        Assert.Equal(cosine, Fidelity(first, GraphOptimizationLevel.ORT_DISABLE_ALL).Cosine, 4);

        var second = Path.Combine(Dir, "second.onnx");
        CompressionPipeline.Run(Fixture("tied_encoder.onnx"), SpecFiles.Load(Dir, Spec(quantize)), second, measureLatency: false);
        Assert.Equal(File.ReadAllBytes(first), File.ReadAllBytes(second));
    }

    /// <summary>Mean cosine of each position's logits (compressed vs original) and the share of positions keeping their top token, for both outputs.</summary>
    private static (double Cosine, double Top1, double FirstCosine, double FirstTop1) Fidelity(string compressed, GraphOptimizationLevel level)
    {
        Compress.Core.Torch.TorchRuntime.EnsureLoaded();
        using var scope = NewDisposeScope();
        var original = Logits(Fixture("tied_encoder.onnx"), GraphOptimizationLevel.ORT_ENABLE_ALL);
        var ours = Logits(compressed, level);
        static (double, double) Compare(Tensor a, Tensor b)
        {
            var cosine = nn.functional.cosine_similarity(a, b, dim: -1).mean().item<float>();
            var top1 = a.argmax(-1).eq(b.argmax(-1)).to_type(ScalarType.Float32).mean().item<float>();
            return (cosine, top1);
        }

        var (cosine, top1) = Compare(original[0], ours[0]);
        var (firstCosine, firstTop1) = Compare(original[1], ours[1]);
        return (cosine, top1, firstCosine, firstTop1);
    }

    private static Tensor[] Logits(string model, GraphOptimizationLevel level)
    {
        var ids = ArrayFile.Read(Fixture("tied_data.npz"))["input_ids"];
        long[] shape = [.. ids.Shape];
        using var options = new SessionOptions { IntraOpNumThreads = 1, GraphOptimizationLevel = level, LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
        using var session = new InferenceSession(model, options);
        using var input = OrtValue.CreateTensorValueFromMemory(ids.ToInt64(), shape);
        using var runOptions = new RunOptions();
        using var results = session.Run(runOptions, ["input_ids"], [input], ["logits", "first_logits"]);
        return results.Select(r => tensor(r.GetTensorDataAsSpan<float>().ToArray()).reshape(r.GetTensorTypeAndShape().Shape)).ToArray();
    }
}
