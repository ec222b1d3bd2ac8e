using Compress.Core.Evaluation;
using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Tests.TestSupport;
using Microsoft.ML.OnnxRuntime;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Compress.Core.Tests.Passes.Quantization;

/// <summary>
/// Weight-only <c>form: int8</c> (algorithms.md §11): the int4 codes stay in the file, and a chain ONNX Runtime folds at
/// load turns them into int8 with one scale per output column, read by DynamicQuantizeMatMul — the integer kernel of
/// dynamic int8 — so the layer multiplies in int8 rather than float32.
/// </summary>
public sealed class Int8FormTests(ITestOutputHelper output) : TempDirectoryTest
{
    private static string Spec(string form) => $$"""
        { "data": { "calibration": { "path": {{SpecFiles.Quote(FashionData.Calibration(image: false))}}, "samples": 128 },
                    "evaluation": { "path": {{SpecFiles.Quote(FashionData.Test(image: false))}}, "samples": 512 } },
          "steps": [ { "quantize": { "weights": "int4", "activations": "none", "method": "rtn", "form": "{{form}}" } } ] }
        """;

    [Fact]
    public void The_int8_form_is_the_int4_codes_folded_into_int8_weights_of_the_integer_kernel()
    {
        var floatPath = Path.Combine(Dir, "float.onnx");
        var int8Path = Path.Combine(Dir, "int8.onnx");
        var floatReport = CompressionPipeline.Run(FashionData.MlpModel, SpecFiles.Load(Dir, Spec("float")), floatPath, measureLatency: false);
        var report = CompressionPipeline.Run(FashionData.MlpModel, SpecFiles.Load(Dir, Spec("int8")), int8Path, measureLatency: false);
        output.WriteLine($"float form {floatReport.Size.CompressedBytes:N0} bytes, int8 form {report.Size.CompressedBytes:N0} bytes");

        var layers = report.Layers.Where(l => l.OpType is "MatMul" or "Gemm").ToList();
        Assert.NotEmpty(layers);
        Assert.All(layers, l => Assert.Equal("int4 block 32 as int8 at load", l.Format));
        Assert.Contains(report.Notes, n => n.StartsWith("weight-only: form 'int8':", StringComparison.Ordinal) && n.Contains($"{layers.Count} MatMul/Gemm weights", StringComparison.Ordinal));
        var graph = OnnxModel.Load(int8Path).Graph;
        Assert.DoesNotContain(graph.Nodes, n => n.OpType is "MatMulNBits" or "MatMul" or "Gemm");
        Assert.Equal(layers.Count, graph.Nodes.Count(n => n.OpType == "DynamicQuantizeMatMul"));
        Assert.Contains(graph.Nodes, n => n.OpType == "BitShift");

        // After loading, the chains are gone: each DynamicQuantizeMatMul reads a constant int8 weight.
        var loaded = Loaded(int8Path);
        Assert.DoesNotContain(loaded.Nodes, n => n.OpType is "Mod" or "BitShift" or "Round" or "Clip" or "Div");
        var kernels = loaded.Nodes.Where(n => n.OpType == "DynamicQuantizeMatMul").ToList();
        Assert.Equal(layers.Count, kernels.Count);
        Assert.All(kernels, k => Assert.Equal((int)TensorProto.Types.DataType.Int8, loaded.GetInitializer(k.Input[1])!.DataType));

        // The int4 file: the int8 form adds only the column scales and the re-quantization nodes to the float form's bytes.
        Assert.True(report.Size.CompressedBytes < floatReport.Size.CompressedBytes * 1.05, $"{report.Size.CompressedBytes:N0} vs {floatReport.Size.CompressedBytes:N0}");

        // The same codes; re-quantizing per column adds at most half an int8 step per weight (plus the activations' own int8 step).
        using var scope = NewDisposeScope();
        var a = Outputs(floatPath);
        var b = Outputs(int8Path);
        var cosine = nn.functional.cosine_similarity(a, b, dim: 1);
        var agreement = a.argmax(1).eq(b.argmax(1)).to_type(ScalarType.Float32).mean().item<float>();
        output.WriteLine($"int8 vs float form: min cosine {cosine.min().item<float>():0.00000}, mean {cosine.mean().item<float>():0.00000}, argmax agreement {agreement:P1}");
        Assert.True(cosine.mean().item<float>() > 0.9995, $"mean cosine {cosine.mean().item<float>()}");
        Assert.True(cosine.min().item<float>() > 0.995, $"min cosine {cosine.min().item<float>()}");
        Assert.True(agreement >= 0.98, $"argmax agreement {agreement:P1}");

        var again = Path.Combine(Dir, "again.onnx");
        CompressionPipeline.Run(FashionData.MlpModel, SpecFiles.Load(Dir, Spec("int8")), again, measureLatency: false);
        Assert.Equal(File.ReadAllBytes(int8Path), File.ReadAllBytes(again));
    }

    /// <summary>
    /// With latency measured, the report times the written model in each form its layers can take — rebuilt from its own
    /// codes — and says which ran faster and which was shipped (JSON: <c>latency.forms</c>; Markdown: one line).
    /// </summary>
    [Fact]
    public void The_report_says_which_form_ran_faster()
    {
        var path = Path.Combine(Dir, "int8.onnx");
        var report = CompressionPipeline.Run(FashionData.MlpModel, SpecFiles.Load(Dir, Spec("int8")), path, measureLatency: true);
        var forms = report.Latency!.Forms!;
        Assert.Equal([WeightFormTiming.Int8, WeightFormTiming.Float, WeightFormTiming.Kernel], forms.Select(f => f.Form));
        Assert.Equal(WeightFormTiming.Int8, Assert.Single(forms, f => f.Shipped).Form);
        Assert.All(forms, f => Assert.True(f.Batch1Ms > 0));
        var markdown = Compress.Core.Reports.ReportWriter.Markdown(report);
        var line = Assert.Single(markdown.Split('\n'), l => l.StartsWith("- weight-only forms at batch 1", StringComparison.Ordinal));
        output.WriteLine(line);
        Assert.Contains("int8 at load", line, StringComparison.Ordinal);
        Assert.Contains("(shipped)", line, StringComparison.Ordinal);
        Assert.Contains("ran fast", line, StringComparison.Ordinal);
        Assert.Contains("\"forms\"", System.Text.Json.JsonSerializer.Serialize(report, Compress.Core.Reports.ReportWriter.Json), StringComparison.Ordinal);

        // The timed variants compute what the forms written by the quantizer compute: the same codes.
        var floatPath = Path.Combine(Dir, "float.onnx");
        var kernelPath = Path.Combine(Dir, "kernel.onnx");
        CompressionPipeline.Run(FashionData.MlpModel, SpecFiles.Load(Dir, Spec("float")), floatPath, measureLatency: false);
        CompressionPipeline.Run(FashionData.MlpModel, SpecFiles.Load(Dir, Spec("kernel")), kernelPath, measureLatency: false);
        var written = OnnxModel.Load(path);
        var asFloat = Path.Combine(Dir, "as_float.onnx");
        var asKernel = Path.Combine(Dir, "as_kernel.onnx");
        WeightFormTiming.AsFloat(written).Save(asFloat);
        WeightFormTiming.AsKernel(written).Save(asKernel);
        Assert.DoesNotContain(OnnxModel.Load(asKernel).Graph.Nodes, n => n.OpType is "DynamicQuantizeMatMul" or "Mod" or "BitShift");
        using var scope = NewDisposeScope();
        Assert.Equal(Outputs(floatPath), Outputs(asFloat));
        var cosine = nn.functional.cosine_similarity(Outputs(kernelPath), Outputs(asKernel), dim: 1).min().item<float>();
        Assert.True(cosine > 0.99999, $"min cosine {cosine}"); // float16 scales against the kernel form's float32 ones
    }

    /// <summary>The graph ONNX Runtime runs after loading <paramref name="model"/> (extended optimizations, constants folded).</summary>
    private OnnxGraph Loaded(string model)
    {
        var optimized = Path.Combine(Dir, Path.GetFileNameWithoutExtension(model) + ".loaded.onnx");
        using (var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_EXTENDED, OptimizedModelFilePath = optimized, LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL })
        using (new InferenceSession(model, options))
        {
        }

        return OnnxModel.Load(optimized).Graph;
    }

    private static Tensor Outputs(string model)
    {
        var arrays = Compress.Core.Data.ArrayFile.Read(FashionData.Test(image: false));
        var input = arrays["input"];
        long[] shape = [512, .. input.Shape[1..]];
        var values = input.As<float>()[..(int)(shape[0] * shape[1])].ToArray();
        using var session = new InferenceSession(model);
        using var value = OrtValue.CreateTensorValueFromMemory(values, shape);
        using var runOptions = new RunOptions();
        using var results = session.Run(runOptions, [session.InputNames[0]], [value], [session.OutputNames[0]]);
        return tensor(results[0].GetTensorDataAsSpan<float>().ToArray()).reshape(results[0].GetTensorTypeAndShape().Shape);
    }
}
