using System.IO.Compression;
using Compress.Core.Diagnostics;
using Compress.Core.Tests.TestSupport;

namespace Compress.Core.Tests.Passes;

public sealed class CompressionPipelineTests : TempDirectoryTest
{
    private string Spec(string steps, string constraints = "{}") => SpecFiles.Write(Dir, $$"""
        {
          "data": {
            "calibration": { "path": {{SpecFiles.Quote(FashionData.Calibration(true))}}, "samples": 256 },
            "evaluation": { "path": {{SpecFiles.Quote(FashionData.Test(true))}}, "labels": "labels", "samples": 2000 }
          },
          "steps": [ {{steps}} ],
          "constraints": {{constraints}}
        }
        """);

    [Fact]
    public void An_impossible_constraint_fails_with_the_figures_and_writes_nothing()
    {
        var output = Path.Combine(Dir, "out", "cnn.onnx");
        var spec = Core.Spec.SpecLoader.Load(Spec("""{ "prune": { "sparsity": 0.97, "maxLayerSparsity": 0.99 } }""", """{ "maxAccuracyDrop": 0.001, "minAgreement": 0.999 }"""));
        var e = Assert.Throws<CompressException>(() => CompressionPipeline.Run(FashionData.CnnModel, spec, output, measureLatency: false));
        Assert.Equal(DiagnosticCodes.ConstraintNotMet, e.Diagnostic.Code);
        Assert.Matches(@"maxAccuracyDrop 0\.001 not met \(measured 0\.\d+\)", e.Message);
        Assert.Matches(@"minAgreement 0\.999 not met", e.Message);
        Assert.Contains("accuracy", e.Message);
        Assert.Contains("worst layers: ", e.Message);
        Assert.Contains("No output was written", e.Message);
        Assert.False(File.Exists(output));
        Assert.Empty(Directory.Exists(Path.GetDirectoryName(output)) ? Directory.GetFiles(Path.GetDirectoryName(output)!) : []);
    }

    /// <summary>
    /// The report's work by stage on the CNN: the source's multiply-adds, a fall where channels go (50% of every group:
    /// 3,024,384 → 834,816 per sample), none where int4 MatMulNBits replaces the Gemms (counted as the float op), the
    /// model written last; a batch-1 latency at every stage (measured, not compared: a figure, never a check).
    /// </summary>
    [Fact]
    public void The_report_gives_the_work_of_every_stage_from_source_to_written()
    {
        var spec = SpecFiles.Load(Dir, $$"""
            { "data": { "calibration": { "path": {{SpecFiles.Quote(FashionData.Calibration(true))}}, "samples": 256 },
                        "evaluation": { "path": {{SpecFiles.Quote(FashionData.Test(true))}}, "labels": "labels", "samples": 500 } },
              "steps": [ { "prune": { "pattern": "channel", "sparsity": 0.5, "scope": "layer" } },
                         { "quantize": { "weights": "int4", "activations": "none" } } ],
              "constraints": { "minAgreement": 0 } }
            """);
        var report = CompressionPipeline.Run(FashionData.CnnModel, spec, Path.Combine(Dir, "out.onnx"), measureLatency: true);
        var stages = report.Stages!;
        Assert.Equal(["source", report.Steps[0], report.Steps[1], "written"], stages.Select(s => s.Stage));
        Assert.Equal([3_024_384L, 834_816L, 834_816L, 834_816L], stages.Select(s => s.MultiplyAdds!.Value));
        Assert.All(stages, s => Assert.True(s.Batch1Ms > 0, s.Stage));
        Assert.Equal(report.Latency!.OriginalBatch1Ms, stages[0].Batch1Ms);
        Assert.Equal(report.Latency.CompressedBatch1Ms, stages[^1].Batch1Ms);
        Assert.Contains(report.Layers, l => l.Format.Contains("MatMulNBits", StringComparison.Ordinal) || l.Bits == 4);
        var markdown = global::Compress.Core.Reports.ReportWriter.Markdown(report);
        Assert.Contains("## Work by stage", markdown, StringComparison.Ordinal);
        Assert.Contains("| written | 834,816 | 27.6 % |", markdown, StringComparison.Ordinal);
        Assert.Contains("<h2>Work by stage</h2>", global::Compress.Core.Reports.HtmlReport.Write(report), StringComparison.Ordinal);

        // Without latency, the work is still counted; only the times are left out.
        var counted = CompressionPipeline.Run(FashionData.CnnModel, spec, Path.Combine(Dir, "counted.onnx"), measureLatency: false);
        Assert.Equal(stages.Select(s => s.MultiplyAdds), counted.Stages!.Select(s => s.MultiplyAdds));
        Assert.All(counted.Stages!, s => Assert.Null(s.Batch1Ms));
    }

    [Fact]
    public void Same_inputs_give_the_same_bytes()
    {
        var spec = Core.Spec.SpecLoader.Load(Spec("""{ "prune": { "sparsity": 0.5 } }, { "quantize": { "weights": "int8", "activations": "uint8", "calibration": "percentile" } }"""));
        var a = Path.Combine(Dir, "a.onnx");
        var b = Path.Combine(Dir, "b.onnx");
        CompressionPipeline.Run(FashionData.CnnModel, spec, a, measureLatency: false);
        CompressionPipeline.Run(FashionData.CnnModel, spec, b, measureLatency: false);
        Assert.Equal(File.ReadAllBytes(a), File.ReadAllBytes(b));
    }

    [Fact]
    public void The_input_model_is_never_the_output()
    {
        var copy = Path.Combine(Dir, "cnn.onnx");
        File.Copy(FashionData.CnnModel, copy);
        var spec = Core.Spec.SpecLoader.Load(Spec("""{ "quantize": { "weights": "fp16" } }"""));
        var e = Assert.Throws<CompressException>(() => CompressionPipeline.Run(copy, spec, copy, measureLatency: false));
        Assert.Equal(DiagnosticCodes.OutputInvalid, e.Diagnostic.Code);
        Assert.Equal(File.ReadAllBytes(FashionData.CnnModel), File.ReadAllBytes(copy));
    }

    [Fact]
    public void Pruned_and_quantized_weights_pack_smaller_than_quantized_alone()
    {
        // Plain ONNX stores int8 weights densely either way (sparse_initializer needs int64 indices); the zeros pay
        // off once the artifact is compressed, as it is in a NuGet package, an app bundle or a container layer.
        var int8 = Path.Combine(Dir, "int8.onnx");
        var both = Path.Combine(Dir, "both.onnx");
        CompressionPipeline.Run(FashionData.CnnModel, Core.Spec.SpecLoader.Load(Spec("""{ "quantize": { "weights": "int8", "activations": "uint8" } }""")), int8, measureLatency: false);
        CompressionPipeline.Run(FashionData.CnnModel, Core.Spec.SpecLoader.Load(Spec("""{ "prune": { "sparsity": 0.5 } }, { "quantize": { "weights": "int8", "activations": "uint8" } }""")), both, measureLatency: false);
        Assert.True(Deflated(both) < Deflated(int8) * 0.85, $"deflated: {Deflated(both)} vs {Deflated(int8)}");
    }

    private static long Deflated(string path)
    {
        using var memory = new MemoryStream();
        using (var deflate = new DeflateStream(memory, CompressionLevel.Optimal, leaveOpen: true))
        {
            deflate.Write(File.ReadAllBytes(path));
        }

        return memory.Length;
    }
}
