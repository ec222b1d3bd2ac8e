using Compress.Core.Tests.TestSupport;
using Xunit;
using Xunit.Abstractions;

namespace Compress.Core.Tests.Passes;

/// <summary>
/// int4 weight-only on the token-table encoder: with calibration data and no method named, GPTQ with act-order rounds
/// the weights (the same bytes as asking for it); a layer whose output error stays above <c>maxLayerError</c> is stored
/// int8 and said so; without data, round-to-nearest as before.
/// </summary>
public sealed class Int4DefaultTests(ITestOutputHelper output) : TempDirectoryTest
{
    private static string Spec(string calibration, string quantize) => $$"""
        { "data": { {{calibration}} "evaluation": { "path": {{SpecFiles.Quote(ThirdPartyModels.EncoderData)}} } },
          "steps": [ { "quantize": { "weights": "int4", "activations": "none"{{quantize}} } } ] }
        """;

    private static readonly string Calibration = $$""" "calibration": { "path": {{SpecFiles.Quote(ThirdPartyModels.EncoderData)}}, "samples": 32 }, """;

    [Fact]
    public void Int4_with_calibration_data_is_gptq_with_act_order_by_default()
    {
        var byDefault = Path.Combine(Dir, "default.onnx");
        var report = CompressionPipeline.Run(ThirdPartyModels.Encoder, SpecFiles.Load(Dir, Spec(Calibration, "")), byDefault, measureLatency: false);
        Assert.Contains(report.Notes, n => n.StartsWith("weight-only: int4 rounded by GPTQ with act-order", StringComparison.Ordinal));
        var matmuls = report.Layers.Where(l => l.OpType == "MatMul").ToList();
        Assert.Equal(12, matmuls.Count);
        // Form 'auto' stores the codes for ONNX Runtime to turn into int8 at load (Int8FormTests).
        Assert.All(matmuls, l => Assert.Equal("int4 block 32 as int8 at load asymmetric (GPTQ)", l.Format));

        var named = Path.Combine(Dir, "named.onnx");
        CompressionPipeline.Run(ThirdPartyModels.Encoder, SpecFiles.Load(Dir, Spec(Calibration, """, "method": "gptq", "actOrder": true, "symmetric": false""")), named, measureLatency: false);
        Assert.Equal(File.ReadAllBytes(named), File.ReadAllBytes(byDefault));

        var rtn = CompressionPipeline.Run(ThirdPartyModels.Encoder, SpecFiles.Load(Dir, Spec("", "")), Path.Combine(Dir, "rtn.onnx"), measureLatency: false);
        Assert.DoesNotContain(rtn.Notes, n => n.Contains("GPTQ", StringComparison.Ordinal));
        Assert.All(rtn.Layers.Where(l => l.OpType == "MatMul"), l => Assert.Equal("int4 MatMulNBits block 32", l.Format));
        output.WriteLine($"cosine: GPTQ act-order {report.Metrics!.Primary.MeanCosine:0.0000}, round-to-nearest {rtn.Metrics!.Primary.MeanCosine:0.0000}");
        Assert.True(report.Metrics.Primary.MeanCosine >= rtn.Metrics.Primary.MeanCosine);
    }

    [Fact]
    public void Layers_above_the_error_bound_fall_back_to_int8_and_are_named()
    {
        var path = Path.Combine(Dir, "fallback.onnx");
        var report = CompressionPipeline.Run(ThirdPartyModels.Encoder, SpecFiles.Load(Dir, Spec(Calibration, """, "maxLayerError": 0.004, "symmetric": true""")), path, measureLatency: false);
        var fallbacks = report.Notes.Where(n => n.Contains("stored int8, its int4 output error", StringComparison.Ordinal)).ToList();
        foreach (var note in fallbacks)
        {
            output.WriteLine(note);
        }

        var int8 = report.Layers.Where(l => l.OpType == "MatMul" && l.Bits == 8).ToList();
        Assert.NotEmpty(int8);
        Assert.True(int8.Count < 12, "some layers keep int4 under the bound");
        Assert.Equal(int8.Count, fallbacks.Count);
        Assert.All(int8, l => Assert.Equal("int8 block 32 as int8 at load", l.Format));
        Assert.All(int8, l => Assert.Contains(fallbacks, n => n.Contains($"'{l.Node}'", StringComparison.Ordinal)));
        Assert.True(report.Metrics!.Primary.MeanCosine >= 0.99);
    }
}
