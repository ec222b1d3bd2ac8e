using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Passes.Graph;
using Compress.Core.Passes.Pruning.Channels;
using Compress.Core.Tests.TestSupport;
using Compress.Core.Torch;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Xunit.Abstractions;

namespace Compress.Core.Tests.Passes.Pruning;

/// <summary>
/// Attention heads of blocks whose q, k and v are three parts of one projection, as PyTorch 1.13 exports them
/// (tests/fixtures/attention, made by eng/fixtures/make_fused_attention.py): nn.TransformerEncoder (in_proj as one
/// MatMul + bias, three Slices with bounds computed from its Shape, Reshapes to [T, B·H, D] whose B·H is a run-time
/// size times the constant H, out_proj a Gemm with transB), the same exported with static shapes, and a GPT-2 block
/// (c_attn then a Split with its sizes as an input, [B, T, H, D]; at opset 12 as its 'split' attribute); and q, k, v and o as Gemms with transB on [B·T, C] rows. Removing heads must give the original model with
/// those heads' V columns and V bias zeroed, in ONNX Runtime, to float rounding.
/// </summary>
public sealed class FusedAttentionHeadTests(ITestOutputHelper output) : TempDirectoryTest
{
    private const long Width = 64;
    private const long HeadSize = 16;

    internal static string Fixture(string name) => Path.Combine(TestData.RepoRoot, "tests", "fixtures", "attention", name);

    internal static OnnxModel Load(string name)
    {
        var model = OnnxModel.Load(Fixture(name));
        ConstantsToInitializers.Apply(model);
        model.Graph.Refresh();
        return model;
    }

    [Theory]
    [InlineData("transformer_encoder.onnx", 2, 4)]
    [InlineData("transformer_encoder_static.onnx", 2, 2)]
    [InlineData("gpt2_block.onnx", 1, 3)]
    [InlineData("gpt2_block_opset12.onnx", 1, 3)]
    [InlineData("gemm_attention.onnx", 1, 2)]
    public void Removing_heads_matches_the_original_with_those_heads_masked(string name, int blocks, int batch)
    {
        var model = Load(name);
        var groups = ChannelGroups.Find(model.Graph).Where(g => g.Heads).ToList();
        Assert.Equal(blocks, groups.Count);
        Assert.All(groups, g => Assert.Null(g.Refusal));
        Assert.All(groups, g => Assert.Equal(4, g.Channels));
        var fused = name != "gemm_attention.onnx";
        Assert.All(groups, g => Assert.Equal(fused ? 1 : 3, g.Producers.Count));

        var original = new OnnxModel(model.Proto.Clone());
        long[] removed = [1, 3];
        foreach (var key in groups.Select(g => g.Key).ToList())
        {
            var group = ChannelGroups.Find(model.Graph).Single(g => g.Key == key);
            if (fused)
            {
                var projection = group.Producers[0];
                var bias = model.Graph.GetConsumers(projection.Output[0]).Single(n => n.OpType == "Add");
                // V is the third part of the fused weight and bias: columns 2·H·D + h·D … of W.
                Mask(original, projection.Input[1], 1, removed, 2 * Width);
                Mask(original, bias.Input.First(i => model.Graph.GetInitializer(i) is not null), 0, removed, 2 * Width);
                ChannelSurgery.Remove(model, group, [0, 2]);
                Assert.Equal([Width, 3 * 2 * HeadSize], model.Graph.GetInitializer(projection.Input[1])!.Dims.ToArray());
            }
            else
            {
                // Gemm with transB: V's heads are rows of its weight, and entries of its bias C.
                Mask(original, "v.weight", 0, removed, 0);
                Mask(original, "v.bias", 0, removed, 0);
                ChannelSurgery.Remove(model, group, [0, 2]);
                Assert.All(["q", "k", "v"], p => Assert.Equal([2 * HeadSize, Width], model.Graph.GetInitializer($"{p}.weight")!.Dims.ToArray()));
                Assert.All(["q", "k", "v"], p => Assert.Equal([2 * HeadSize], model.Graph.GetInitializer($"{p}.bias")!.Dims.ToArray()));
            }

            var o = group.Consumers.Single();
            var expected = o.Axis == 1 ? new[] { Width, 2 * HeadSize } : [2 * HeadSize, Width];
            Assert.Equal(expected, model.Graph.GetInitializer(o.Initializer)!.Dims.ToArray());
        }

        var worst = AssertSameOutputs(original, model, batch);
        output.WriteLine($"{name}: {blocks} blocks, heads 1 and 3 removed: largest difference {worst:E2}");

        // Masking other heads than those removed is told apart (the comparison can fail).
        var wrong = new OnnxModel(Load(name).Proto.Clone());
        foreach (var group in ChannelGroups.Find(wrong.Graph).Where(g => g.Heads).ToList())
        {
            var projection = group.Producers.Last();
            Mask(wrong, projection.Input[1], fused ? 1 : 0, [1, 2], fused ? 2 * Width : 0);
        }

        Assert.Throws<Xunit.Sdk.TrueException>(() => AssertSameOutputs(wrong, model, batch));

        // Found again on the pruned graph: two heads each, and they can go down to one.
        var again = ChannelGroups.Find(model.Graph).Where(g => g.Heads).ToList();
        Assert.All(again, g => Assert.Null(g.Refusal));
        Assert.All(again, g => Assert.Equal(2, g.Channels));
    }

    /// <summary>The split sizes (GPT-2) and the head count in B·H (nn.MultiheadAttention) are rewritten, each node with a constant of its own.</summary>
    [Fact]
    public void The_split_sizes_and_the_head_count_are_rewritten()
    {
        var gpt2 = Load("gpt2_block.onnx");
        var group = Assert.Single(ChannelGroups.Find(gpt2.Graph), g => g.Heads);
        ChannelSurgery.Remove(gpt2, group, [0, 1, 3]);
        var split = gpt2.Graph.Nodes.Single(n => n.OpType == "Split");
        Assert.Equal([48L, 48, 48], Longs(gpt2, split.Input[1]));

        // Before opset 13 the sizes are the Split's attribute.
        var opset12 = Load("gpt2_block_opset12.onnx");
        ChannelSurgery.Remove(opset12, Assert.Single(ChannelGroups.Find(opset12.Graph), g => g.Heads), [0, 1, 3]);
        Assert.Equal([48L, 48, 48], opset12.Graph.Nodes.Single(n => n.OpType == "Split").Ints("split")!);

        var encoder = Load("transformer_encoder.onnx");
        var first = ChannelGroups.Find(encoder.Graph).First(g => g.Heads);
        ChannelSurgery.Remove(encoder, first, [2]);
        var product = encoder.Graph.Nodes.Single(n => n.Name == "/layers.0/self_attn/Mul_3");
        var count = encoder.Graph.GetInitializer(product.Input[1])!;
        Assert.Empty(count.Dims);
        Assert.Equal([1L], Longs(encoder, product.Input[1]));
        // The second layer's count is its own and still 4.
        var other = encoder.Graph.Nodes.Single(n => n.Name == "/layers.1/self_attn/Mul_3");
        Assert.Equal([4L], Longs(encoder, other.Input[1]));
    }

    /// <summary>What the engine cannot rewrite safely leaves the block whole, with the reason.</summary>
    [Theory]
    [InlineData("count", "the head count '")]
    [InlineData("width", "may read the last axis of '/layers.0/self_attn/Add_output_0'")]
    public void What_cannot_be_rewritten_leaves_the_heads_whole(string change, string reason)
    {
        var model = Load("transformer_encoder.onnx");
        var graph = model.Graph;
        if (change == "count")
        {
            // B·H read outside the block: a graph output.
            graph.Proto.Output.Add(new ValueInfoProto { Name = "/layers.0/self_attn/Mul_3_output_0" });
        }
        else
        {
            // The fused projection's width read by something other than the chunk bounds.
            var gather = graph.Nodes.Single(n => n.Name == "/layers.0/self_attn/Gather_3");
            graph.Proto.Output.Add(new ValueInfoProto { Name = gather.Output[0] });
        }

        graph.Refresh();
        var group = ChannelGroups.Find(graph).First(g => g.Heads);
        output.WriteLine(group.Refusal);
        Assert.Contains(reason, group.Refusal);
        Assert.Null(ChannelGroups.Find(graph).Where(g => g.Heads).Last().Refusal);
    }

    private static string Spec(double sparsity) => $$"""
        { "data": { "calibration": { "path": {{SpecFiles.Quote(Fixture("calibration.npz"))}} },
                    "evaluation": { "path": {{SpecFiles.Quote(Fixture("evaluation.npz"))}} } },
          "constraints": { "minAgreement": 0 },
          "steps": [ { "prune": { "method": "obs", "pattern": "channel", "scope": "layer", "sparsity": {{sparsity}},
                                  "include": [ "*/self_attn/MatMul" ] } } ] }
        """;

    /// <summary>The prune step on nn.TransformerEncoder: half the heads of both layers go, and the same spec writes the same bytes twice.</summary>
    [Fact]
    public void The_encoder_loses_half_its_heads_and_the_same_spec_writes_the_same_bytes_twice()
    {
        var first = Path.Combine(Dir, "first.onnx");
        var second = Path.Combine(Dir, "second.onnx");
        var report = CompressionPipeline.Run(Fixture("transformer_encoder.onnx"), SpecFiles.Load(Dir, Spec(0.5)), first, measureLatency: false);
        CompressionPipeline.Run(Fixture("transformer_encoder.onnx"), SpecFiles.Load(Dir, Spec(0.5)), second, measureLatency: false);
        foreach (var note in report.Notes.Where(n => n.Contains("channel", StringComparison.Ordinal)))
        {
            output.WriteLine(note);
        }

        Assert.Contains(report.Notes, n => n.Contains("2 attention blocks, 4 of 8 heads removed", StringComparison.Ordinal));
        var model = OnnxModel.Load(first);
        for (var layer = 0; layer < 2; layer++)
        {
            var projection = model.Graph.Nodes.Single(n => n.Name == $"/layers.{layer}/self_attn/MatMul");
            Assert.Equal([Width, 3 * 2 * HeadSize], model.Graph.GetInitializer(projection.Input[1])!.Dims.ToArray());
            var o = model.Graph.Nodes.Single(n => n.Name == $"/layers.{layer}/self_attn/Gemm");
            Assert.Equal([Width, 2 * HeadSize], model.Graph.GetInitializer(o.Input[1])!.Dims.ToArray());
        }

        var stages = report.Stages!;
        Assert.True(stages[^1].MultiplyAdds < stages[0].MultiplyAdds, "fewer multiply-adds");
        Assert.Equal(File.ReadAllBytes(first), File.ReadAllBytes(second));
    }

    private static long[] Longs(OnnxModel model, string name) => StaticShape.Int64s(model.Graph.GetInitializer(name)!)!;

    /// <summary>Zeroes heads' D columns (or entries) of one part of a fused weight: along <paramref name="axis"/>, from <paramref name="offset"/>.</summary>
    internal static void Mask(OnnxModel model, string weight, int axis, long[] heads, long offset)
    {
        var tensor = model.Graph.GetInitializer(weight)!;
        var values = model.ToTorch(tensor);
        foreach (var h in heads)
        {
            values.narrow(axis, offset + h * HeadSize, HeadSize).zero_();
        }

        model.ReplaceData(tensor, values.ToOnnx(weight));
    }

    internal static float AssertSameOutputs(OnnxModel expected, OnnxModel actual, int batch)
    {
        var random = new Random(9);
        var x = Enumerable.Range(0, batch * 16 * (int)Width).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var a = Run(expected, x, batch);
        var b = Run(actual, x, batch);
        Assert.Equal(a.Length, b.Length);
        var scale = a.Max(Math.Abs);
        var worst = a.Zip(b, (p, q) => Math.Abs(p - q)).Max();
        Assert.True(worst <= 1e-5f * Math.Max(1, scale), $"largest difference {worst} (scale {scale})");
        return worst;
    }

    private static float[] Run(OnnxModel model, float[] x, int batch)
    {
        using var options = new SessionOptions { IntraOpNumThreads = 1, GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL };
        using var session = new InferenceSession(model.Proto.ToByteArray(), options);
        using var input = OrtValue.CreateTensorValueFromMemory(x, [batch, 16, Width]);
        using var results = session.Run(new RunOptions(), ["x"], [input], ["y"]);
        return results[0].GetTensorDataAsSpan<float>().ToArray();
    }
}
