using Compress.Core.Execution;
using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Tests.TestSupport;
using Microsoft.ML.OnnxRuntime;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Compress.Core.Tests.Passes;

/// <summary>
/// Embedding tables in every integer scheme, on the token-table encoder fixture (vocabulary 4,000 × 64, positions
/// 128 × 64 cut by Slice): the token table becomes a GatherBlockQuantized (int8 per row, or int4 blocks), the position
/// table int8 per row behind a DequantizeLinear; ONNX Runtime loads the result, the embedding stays close, the bytes
/// repeat, and the TorchSharp executor computes what ONNX Runtime does.
/// </summary>
public sealed class EmbeddingTableTests(ITestOutputHelper output) : TempDirectoryTest
{
    [Theory]
    [InlineData("dynamic", 8, 0.30, 0.999)]
    [InlineData("static", 8, 0.33, 0.995)]
    [InlineData("int8-weights", 8, 0.31, 0.999)]
    [InlineData("int4", 4, 0.20, 0.99)]
    public void Every_integer_scheme_quantizes_the_token_and_position_tables(string scheme, int bits, double maxRatio, double minCosine)
    {
        var quantize = scheme switch
        {
            "dynamic" => """ "weights": "int8", "activations": "dynamic" """,
            "static" => """ "weights": "int8", "activations": "int8" """,
            "int8-weights" => """ "weights": "int8", "activations": "none", "form": "kernel" """,
            _ => """ "weights": "int4", "activations": "none", "form": "kernel" """,
        };
        var json = $$"""
        { "data": { "calibration": { "path": {{SpecFiles.Quote(ThirdPartyModels.EncoderData)}}, "samples": 32 },
                    "evaluation": { "path": {{SpecFiles.Quote(ThirdPartyModels.EncoderData)}} } },
          "steps": [ { "quantize": { {{quantize}} } } ] }
        """;
        var spec = SpecFiles.Load(Dir, json);
        var first = Path.Combine(Dir, "first.onnx");
        var report = CompressionPipeline.Run(ThirdPartyModels.Encoder, spec, first, measureLatency: false);
        var cosine = report.Metrics!.Primary.MeanCosine!.Value;
        output.WriteLine($"{scheme}: {report.Size.CompressedBytes:N0} bytes ({report.Size.Ratio:0.000}x), cosine {cosine:0.0000}");

        var tokens = Assert.Single(report.Layers, l => l.Weight == "tokens.weight");
        Assert.Equal(bits, tokens.Bits);
        Assert.StartsWith($"int{bits} GatherBlockQuantized", tokens.Format);
        var positions = Assert.Single(report.Layers, l => l.Weight == "positions");
        Assert.Equal(8, positions.Bits);

        var model = OnnxModel.Load(first);
        var lookup = Assert.Single(model.Graph.Nodes, n => n.OpType == "GatherBlockQuantized");
        Assert.Equal("com.microsoft", lookup.Domain);
        Assert.Equal(bits, lookup.Int("bits", 4));
        Assert.Null(model.Graph.GetInitializer("tokens.weight"));
        Assert.Null(model.Graph.GetInitializer("positions"));
        Assert.DoesNotContain(model.Graph.Nodes, n => n.OpType is "Gather" or "Slice" && model.Graph.GetInitializer(n.Input[0]) is not null);

        Assert.True(report.Size.Ratio <= maxRatio, $"{report.Size.Ratio:0.000}x");
        Assert.True(cosine >= minCosine, $"cosine {cosine:0.0000}");

        var second = Path.Combine(Dir, "second.onnx");
        CompressionPipeline.Run(ThirdPartyModels.Encoder, SpecFiles.Load(Dir, json), second, measureLatency: false);
        Assert.Equal(File.ReadAllBytes(first), File.ReadAllBytes(second));
    }

    /// <summary>Tables alone quantized (the MatMuls float), so the TorchSharp executor can run the whole result.</summary>
    [Theory]
    [InlineData("int8")]
    [InlineData("int4")]
    public void The_executor_reads_quantized_tables_as_onnx_runtime_does(string weights)
    {
        var spec = SpecFiles.Load(Dir, $$"""{ "steps": [ { "quantize": { "weights": "{{weights}}", "activations": "none", "opTypes": ["Gather"] } } ] }""");
        var path = Path.Combine(Dir, "tables.onnx");
        var report = CompressionPipeline.Run(ThirdPartyModels.Encoder, spec, path, measureLatency: false);
        Assert.Equal(["positions", "tokens.weight"], report.Layers.Select(l => l.Weight).Order());
        ExecutorMatchesOnnxRuntime(path);
    }

    [Fact]
    public void Excluding_gather_keeps_the_tables_float()
    {
        var spec = SpecFiles.Load(Dir, """
        { "steps": [ { "quantize": { "weights": "int8", "activations": "dynamic", "exclude": ["Gather", "Slice"] } } ] }
        """);
        var report = CompressionPipeline.Run(ThirdPartyModels.Encoder, spec, Path.Combine(Dir, "out.onnx"), measureLatency: false);
        Assert.DoesNotContain(report.Layers, l => l.Weight is "tokens.weight" or "positions");
        var model = OnnxModel.Load(Path.Combine(Dir, "out.onnx"));
        Assert.NotNull(model.Graph.GetInitializer("tokens.weight"));
        Assert.NotNull(model.Graph.GetInitializer("positions"));
        Assert.DoesNotContain(model.Graph.Nodes, n => n.OpType == "GatherBlockQuantized");
    }

    /// <summary>A table another op also reads (an output projection tied to the token table) is left float, and said.</summary>
    [Fact]
    public void A_table_with_another_reader_stays_float_with_a_note()
    {
        var model = OnnxModel.Load(ThirdPartyModels.Encoder);
        var graph = model.Graph;
        graph.Append(new NodeProto { OpType = "ReduceMean", Name = "tied_reader", Input = { "tokens.weight" }, Output = { "table_mean" } });
        graph.Proto.Output.Add(new ValueInfoProto
        {
            Name = "table_mean",
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = new TensorShapeProto() } },
        });
        var path = Path.Combine(Dir, "tied.onnx");
        model.Save(path);

        var spec = SpecFiles.Load(Dir, """{ "steps": [ { "quantize": { "weights": "int8", "activations": "dynamic" } } ] }""");
        var report = CompressionPipeline.Run(path, spec, Path.Combine(Dir, "out.onnx"), measureLatency: false);
        Assert.Contains(report.Notes, n => n == "embeddings: 'tokens.weight' kept float (also read by 'tied_reader')");
        Assert.DoesNotContain(report.Layers, l => l.Weight == "tokens.weight");
        Assert.Contains(report.Layers, l => l.Weight == "positions" && l.Bits == 8);
    }

    /// <summary>The quantized model run by the TorchSharp executor (GatherBlockQuantized, DequantizeLinear) and by ONNX Runtime.</summary>
    private void ExecutorMatchesOnnxRuntime(string path)
    {
        Compress.Core.Torch.TorchRuntime.EnsureLoaded();
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var model = OnnxModel.Load(path);
        var ids = randint(0, 4000, [2, 16], dtype: ScalarType.Int64, generator: new Generator(3));
        var mask = ones([2, 16], dtype: ScalarType.Int64);
        using var graph = new TorchGraph(model);
        var ours = graph.Run(new Dictionary<string, Tensor> { ["input_ids"] = ids, ["attention_mask"] = mask })["last_hidden_state"];

        using var session = OrtHarness.Open(path);
        using var idsValue = OrtValue.CreateTensorValueFromMemory(ids.data<long>().ToArray(), [2, 16]);
        using var maskValue = OrtValue.CreateTensorValueFromMemory(mask.data<long>().ToArray(), [2, 16]);
        using var runOptions = new RunOptions();
        using var results = session.Run(runOptions, ["input_ids", "attention_mask"], [idsValue, maskValue], ["last_hidden_state"]);
        var expected = tensor(results[0].GetTensorDataAsSpan<float>().ToArray()).reshape(2, 16, 64);
        var relative = (ours - expected).abs().max().item<float>() / expected.abs().max().item<float>();
        output.WriteLine($"executor vs ONNX Runtime: relative max difference {relative:E2}");
        Assert.True(relative <= 1e-4, $"relative max difference {relative:E2}");
    }
}
