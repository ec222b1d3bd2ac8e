using Compress.Core.Onnx;
using Compress.Core.Passes.Quantization;
using Compress.Core.Tests.TestSupport;
using Microsoft.ML.OnnxRuntime;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Compress.Core.Tests.Passes.Quantization;

/// <summary>
/// Weight-only <c>form</c> (algorithms.md §11): <c>float</c> stores the MatMulNBits codes behind a chain ONNX Runtime
/// folds into the float32 weight at load; <c>auto</c> takes the <c>int8</c> form (<see cref="Int8FormTests"/>) for
/// every weight, an MLP at batch 1 included. Chosen without timings: the same bytes every run.
/// </summary>
public sealed class UnpackedBlockTests(ITestOutputHelper output) : TempDirectoryTest
{
    private static string Spec(string form) => $$"""
        { "data": { "calibration": { "path": {{SpecFiles.Quote(FashionData.Calibration(image: false))}}, "samples": 128 },
                    "evaluation": { "path": {{SpecFiles.Quote(FashionData.Test(image: false))}}, "samples": 512 } },
          "steps": [ { "quantize": { "weights": "int4", "activations": "none", "method": "rtn"{{form}} } } ] }
        """;

    [Fact]
    public void Auto_multiplies_in_int8_also_where_each_sample_is_one_row()
    {
        var path = Path.Combine(Dir, "auto.onnx");
        var report = CompressionPipeline.Run(FashionData.MlpModel, SpecFiles.Load(Dir, Spec("")), path, measureLatency: false);
        var layers = report.Layers.Where(l => l.OpType is "MatMul" or "Gemm").ToList();
        Assert.NotEmpty(layers);
        Assert.All(layers, l => Assert.Equal("int4 block 32 as int8 at load", l.Format));
        Assert.Contains(report.Notes, n => n.StartsWith("weight-only: form 'auto' ", StringComparison.Ordinal));
        Assert.Equal(layers.Count, OnnxModel.Load(path).Graph.Nodes.Count(n => n.OpType == "DynamicQuantizeMatMul"));
    }

    [Fact]
    public void The_float_form_is_the_same_codes_folded_into_float_weights_at_load()
    {
        var kernel = Path.Combine(Dir, "kernel.onnx");
        var unpacked = Path.Combine(Dir, "float.onnx");
        var kernelReport = CompressionPipeline.Run(FashionData.MlpModel, SpecFiles.Load(Dir, Spec(""", "form": "kernel" """)), kernel, measureLatency: false);
        var report = CompressionPipeline.Run(FashionData.MlpModel, SpecFiles.Load(Dir, Spec(""", "form": "float" """)), unpacked, measureLatency: false);
        output.WriteLine($"kernel {kernelReport.Size.CompressedBytes:N0} bytes, float form {report.Size.CompressedBytes:N0} bytes");

        var layers = report.Layers.Where(l => l.OpType is "MatMul" or "Gemm").ToList();
        Assert.All(layers, l => Assert.Equal("int4 block 32 unpacked at load", l.Format));
        var graph = OnnxModel.Load(unpacked).Graph;
        Assert.DoesNotContain(graph.Nodes, n => n.OpType == "MatMulNBits");
        Assert.All(layers, l => Assert.NotNull(graph.GetProducer(l.Weight))); // the weight is the chain's output, under its own name
        Assert.Contains(graph.Nodes, n => n.OpType == "BitShift");
        Assert.Empty(OpsLeftAfterLoading(unpacked, Dir));

        // float16 scales instead of float32: the float form is no bigger than the kernel one.
        Assert.True(report.Size.CompressedBytes <= kernelReport.Size.CompressedBytes, $"{report.Size.CompressedBytes:N0} > {kernelReport.Size.CompressedBytes:N0}");

        // The same codes; only the scales' float16 rounding (≤ 2⁻¹¹ relative) tells the two apart.
        using var scope = NewDisposeScope();
        var a = Outputs(kernel);
        var b = Outputs(unpacked);
        var cosine = nn.functional.cosine_similarity(a, b, dim: 1).min().item<float>();
        Assert.True(cosine > 0.99999, $"min cosine {cosine}");
        Assert.Equal(a.argmax(1), b.argmax(1));

        var again = Path.Combine(Dir, "again.onnx");
        CompressionPipeline.Run(FashionData.MlpModel, SpecFiles.Load(Dir, Spec(""", "form": "float" """)), again, measureLatency: false);
        Assert.Equal(File.ReadAllBytes(unpacked), File.ReadAllBytes(again));
    }

    [Fact]
    public void Only_more_than_one_row_per_sample_is_unpacked()
    {
        Assert.False(UnpackedBlocks.Faster(1));
        Assert.True(UnpackedBlocks.Faster(2));
        Assert.True(UnpackedBlocks.Faster(32));
    }

    [Fact]
    public void Scales_are_rounded_to_float16_only_when_all_are_normal_float16()
    {
        Compress.Core.Torch.TorchRuntime.EnsureLoaded();
        using var scope = NewDisposeScope();
        var normal = tensor(new[] { 0.0123456f, 0.5f, 3.14159f });
        var rounded = UnpackedBlocks.RoundToHalf(normal);
        Assert.Equal(normal.to_type(ScalarType.Float16).to_type(ScalarType.Float32), rounded);
        Assert.True(UnpackedBlocks.HalfScales(rounded));
        Assert.False(UnpackedBlocks.HalfScales(normal));

        var tiny = tensor(new[] { 1e-7f, 0.5f }); // below float16's normal range: all stay float32
        Assert.Equal(tiny, UnpackedBlocks.RoundToHalf(tiny));
        Assert.False(UnpackedBlocks.HalfScales(tiny));
    }

    /// <summary>The chain's ops (Mod, BitShift) left in the graph ONNX Runtime runs after loading <paramref name="model"/>: none once folded.</summary>
    internal static IReadOnlyList<string> OpsLeftAfterLoading(string model, string dir)
    {
        var optimized = Path.Combine(dir, Path.GetFileNameWithoutExtension(model) + ".loaded.onnx");
        using (var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_EXTENDED, OptimizedModelFilePath = optimized, LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL })
        using (new InferenceSession(model, options))
        {
        }

        return OnnxModel.Load(optimized).Graph.Nodes.Where(n => n.OpType is "Mod" or "BitShift").Select(OnnxGraph.Describe).ToList();
    }

    private static Tensor Outputs(string model)
    {
        var arrays = Compress.Core.Data.ArrayFile.Read(FashionData.Test(image: false));
        var input = arrays["input"];
        long[] shape = [256, .. input.Shape[1..]];
        var values = input.As<float>()[..(int)(shape[0] * shape[1])].ToArray();
        using var session = new InferenceSession(model);
        using var value = OrtValue.CreateTensorValueFromMemory(values, shape);
        using var runOptions = new RunOptions();
        using var results = session.Run(runOptions, [session.InputNames[0]], [value], [session.OutputNames[0]]);
        return tensor(results[0].GetTensorDataAsSpan<float>().ToArray()).reshape(results[0].GetTensorTypeAndShape().Shape);
    }
}
