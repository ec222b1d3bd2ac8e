using Compress.Core.Diagnostics;
using Compress.Core.Onnx;
using Compress.Core.Tests.TestSupport;
using Compress.Runtime.Packing;
using Compress.Spec;
using Microsoft.ML.OnnxRuntime;
using Xunit.Abstractions;

namespace Compress.Core.Tests.Packing;

/// <summary>The <c>pack</c> step end to end on the Fashion-MNIST MLP: SparseGPT 70 % + 4-bit weight sharing.</summary>
public sealed class PackingPipelineTests(ITestOutputHelper output) : TempDirectoryTest
{
    private const string Steps = """{ "prune": { "method": "obs", "sparsity": 0.7 } }, { "pack": { "bits": 4 } }""";

    [Fact]
    public void Packs_the_mlp_within_a_point_and_expands_to_bit_identical_outputs()
    {
        var packed = Compress(Steps, "mlp.cpack");
        Assert.True(packed.Metrics!.OriginalAccuracy - packed.Metrics.CompressedAccuracy < 0.01, $"accuracy {packed.Metrics.OriginalAccuracy} → {packed.Metrics.CompressedAccuracy}");
        Assert.True(packed.Size.Ratio < 1 / 15.0, $"size ratio {packed.Size.Ratio:0.0000}");
        Assert.All(packed.Layers, l => Assert.Equal("4-bit codebook (k-means + least squares)", l.Format));
        Assert.Contains(packed.Notes, n => n.Contains("lower than with the k-means centroids", StringComparison.Ordinal));

        // The ONNX-only form of the same run is the unpacked compressed model's values behind Gather: same outputs, bit for bit.
        var gather = Compress(Steps.Replace("\"bits\": 4", "\"bits\": 4, \"format\": \"onnx\""), "mlp.onnx");
        var expanded = PackedModel.Expand(File.ReadAllBytes(packed.Output));
        var plain = OnnxModel.Load(gather.Output);
        Assert.Contains(plain.Proto.Graph.Node, n => n.OpType == "Gather");
        Assert.Equal(Run(File.ReadAllBytes(gather.Output)), Run(expanded));
        Assert.Equal(gather.Metrics!.CompressedAccuracy, packed.Metrics.CompressedAccuracy);

        // The engine reads the packed file back as the model it holds.
        Assert.Equal(plain.Proto.Graph.Node.Count(n => n.OpType is "MatMul" or "Gemm"), OnnxModel.Load(packed.Output).Proto.Graph.Node.Count(n => n.OpType is "MatMul" or "Gemm"));
    }

    [Fact]
    public void An_onnx_output_name_for_the_packed_form_is_refused()
    {
        var error = Assert.Throws<CompressException>(() => Compress("""{ "prune": { "sparsity": 0.5 } }, { "pack": { "bits": 4 } }""", "out.onnx", data: false));
        Assert.Equal(DiagnosticCodes.PackOutputName, error.Diagnostic.Code);
        Assert.Contains("out.cpack", error.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(Dir, "out.onnx")));
    }

    [Fact]
    public void Refine_without_calibration_data_is_refused_at_the_step()
    {
        var error = Assert.Throws<CompressException>(() => Compress("""{ "pack": { "bits": 4, "refine": true } }""", "out.cpack", data: false));
        Assert.Equal(SpecCodes.Inconsistent, error.Diagnostic.Code);
        Assert.Contains("data.calibration.path", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{ "pack": { "bits": 4 } }, { "prune": { "sparsity": 0.5 } }""", "CMP0107", "must be the last step")]
    [InlineData("""{ "pack": { "bits": 9 } }""", "CMP0103", "'bits'")]
    [InlineData("""{ "pack": { "format": "zip" } }""", "CMP0103", "allowed: cpack, onnx")]
    public void Pack_specs_are_checked(string steps, string code, string message)
    {
        var error = Assert.Throws<SpecException>(() => SpecReader.Read($$"""{ "steps": [ {{steps}} ] }""", "spec.json", checkFiles: false));
        Assert.Equal(code, error.Code);
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }

    private global::Compress.Core.Reports.CompressionReport Compress(string steps, string outputName, bool data = true)
    {
        var dataJson = data ? $$"""
          "data": {
            "calibration": { "path": {{SpecFiles.Quote(FashionData.Calibration(false))}}, "samples": 512, "seed": 1 },
            "evaluation": { "path": {{SpecFiles.Quote(FashionData.Test(false))}}, "labels": "labels" }
          },
          "constraints": { "minAgreement": 0 },
        """ : "";
        var spec = SpecFiles.Load(Dir, $$"""{ {{dataJson}} "steps": [ {{steps}} ] }""");
        var report = CompressionPipeline.Run(FashionData.MlpModel, spec, Path.Combine(Dir, outputName), measureLatency: false);
        output.WriteLine(global::Compress.Core.Reports.ReportWriter.Markdown(report));
        return report;
    }

    private static byte[] Run(byte[] model)
    {
        using var options = new SessionOptions { IntraOpNumThreads = 1, LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
        using var session = new InferenceSession(model, options);
        var x = Models.RandomInput(16 * 784, 9).Select(v => (v + 1) / 2).ToArray();
        using var input = OrtValue.CreateTensorValueFromMemory(x, [16, 784]);
        using var results = session.Run(new RunOptions(), [session.InputNames[0]], [input], [session.OutputNames[0]]);
        return System.Runtime.InteropServices.MemoryMarshal.AsBytes(results[0].GetTensorDataAsSpan<float>()).ToArray();
    }
}
