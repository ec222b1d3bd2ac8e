using Compress.Core.Calibration;
using Compress.Core.Evaluation;
using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Passes.Pruning.Channels;
using Compress.Core.Tests.TestSupport;
using Xunit.Abstractions;
using static Compress.Core.Tests.Passes.Pruning.FusedAttentionHeadTests;

namespace Compress.Core.Tests.Passes.Pruning;

/// <summary>
/// Attention heads of ONNX Runtime's fused com.microsoft.Attention (tests/fixtures/attention/bert_attention.onnx, made by
/// eng/fixtures/make_contrib_attention.py): a 2-layer BERT-style encoder whose q, k and v are packed in one [64, 192]
/// weight of the op, 4 heads of 16; and the same with com.microsoft.MultiHeadAttention (bert_multihead.onnx), q, k and v
/// three MatMuls whose biases are packed in the op's bias input. Removing heads must give the original model with those heads' V columns and V bias
/// zeroed, in ONNX Runtime, to float rounding; what the engine cannot rewrite leaves the op whole, with the reason.
/// </summary>
public sealed class ContribAttentionHeadTests(ITestOutputHelper output) : TempDirectoryTest
{
    private const long Width = 64;
    private const long HeadSize = 16;
    private const string Name = "bert_attention.onnx";
    private const string MultiHead = "bert_multihead.onnx";

    private static List<NodeProto> Attentions(OnnxModel model) => model.Graph.Nodes.Where(n => n.OpType is "Attention" or "MultiHeadAttention").ToList();

    [Theory]
    [InlineData(Name, false)]
    [InlineData(Name, true)]
    [InlineData(MultiHead, false)]
    public void Removing_heads_matches_the_original_with_those_heads_masked(string name, bool hiddenSizes)
    {
        var model = Load(name);
        if (hiddenSizes)
        {
            // qkv_hidden_sizes given (equal): rewritten with num_heads.
            Attentions(model).ForEach(n => n.Attribute.Add(OnnxAttribute.Ints("qkv_hidden_sizes", Width, Width, Width)));
        }

        var packed = name == Name;
        var groups = ChannelGroups.Find(model.Graph).Where(g => g.Heads).ToList();
        Assert.Equal(2, groups.Count);
        Assert.All(groups, g => Assert.Null(g.Refusal));
        Assert.All(groups, g => Assert.Equal(4, g.Channels));
        Assert.All(groups, g => Assert.Equal(packed ? ["Attention"] : ["MatMul", "MatMul", "MatMul"], g.Producers.Select(p => p.OpType)));

        var original = new OnnxModel(model.Proto.Clone());
        long[] removed = [1, 3];
        foreach (var (key, layer) in groups.Select((g, i) => (g.Key, i)).ToList())
        {
            var group = ChannelGroups.Find(model.Graph).Single(g => g.Key == key);
            var attention = Attentions(model)[layer];
            var bias = packed ? attention.Input[2] : attention.Input[3];
            // V is the third part of the packed bias (and of an Attention's packed weight): entries 2·C + h·D …
            Mask(original, bias, 0, removed, 2 * Width);
            Mask(original, packed ? attention.Input[1] : $"layer.{layer}.attention.value.weight", 1, removed, packed ? 2 * Width : 0);
            ChannelSurgery.Remove(model, group, [0, 2]);
            if (packed)
            {
                Assert.Equal([Width, 3 * 2 * HeadSize], model.Graph.GetInitializer(attention.Input[1])!.Dims.ToArray());
            }
            else
            {
                Assert.All(["query", "key", "value"], p => Assert.Equal([Width, 2 * HeadSize], model.Graph.GetInitializer($"layer.{layer}.attention.{p}.weight")!.Dims.ToArray()));
            }

            Assert.Equal([3 * 2 * HeadSize], model.Graph.GetInitializer(bias)!.Dims.ToArray());
            Assert.Equal(2, attention.Int("num_heads", 0));
            Assert.Equal(hiddenSizes ? [2 * HeadSize, 2 * HeadSize, 2 * HeadSize] : null, attention.Ints("qkv_hidden_sizes"));
            var o = group.Consumers.Single();
            Assert.Equal(0, o.Axis);
            Assert.Equal([2 * HeadSize, Width], model.Graph.GetInitializer(o.Initializer)!.Dims.ToArray());
        }

        var worst = AssertSameOutputs(original, model, 3);
        output.WriteLine($"{name}: 2 attention ops, heads 1 and 3 removed: largest difference {worst:E2}");

        // Masking other heads than those removed is told apart (the comparison can fail).
        var wrong = Load(name);
        foreach (var (attention, layer) in Attentions(wrong).Select((a, i) => (a, i)))
        {
            Mask(wrong, packed ? attention.Input[1] : $"layer.{layer}.attention.value.weight", 1, [1, 2], packed ? 2 * Width : 0);
        }

        Assert.Throws<Xunit.Sdk.TrueException>(() => AssertSameOutputs(wrong, model, 3));

        // Found again on the pruned graph: two heads each.
        var again = ChannelGroups.Find(model.Graph).Where(g => g.Heads).ToList();
        Assert.All(again, g => Assert.Null(g.Refusal));
        Assert.All(again, g => Assert.Equal(2, g.Channels));
    }

    /// <summary>What the engine cannot rewrite leaves the Attention op whole, with the reason; the other layer's stays prunable.</summary>
    [Theory]
    [InlineData("past", "carries past and present key/value state")]
    [InlineData("sizes", "(80, 80, 32) are not three equal parts of its 192 weight columns")]
    [InlineData("reader", "reads the output of '/layer.0/attention/Attention' besides its output projection")]
    [InlineData("bias", "may hold one value per head")]
    [InlineData("present", "carries past and present key/value state", MultiHead)]
    [InlineData("projection", "reach the graph output '/layer.0/attention/key/MatMul_output_0'", MultiHead)]
    public void What_cannot_be_rewritten_leaves_the_heads_whole(string change, string reason, string name = Name)
    {
        var model = Load(name);
        var graph = model.Graph;
        var attention = Attentions(model)[0];
        switch (change)
        {
            case "past":
                attention.Output.Add("present");
                break;
            case "sizes":
                attention.Attribute.Add(OnnxAttribute.Ints("qkv_hidden_sizes", 80, 80, 32));
                break;
            case "present":
                attention.Output.Add("present_key");
                break;
            case "projection":
                graph.Proto.Output.Add(new ValueInfoProto { Name = "/layer.0/attention/key/MatMul_output_0" });
                break;
            case "reader":
                graph.Proto.Node.Add(new NodeProto { OpType = "Relu", Name = "/extra", Input = { attention.Output[0] }, Output = { "extra" } });
                graph.Proto.Output.Add(new ValueInfoProto { Name = "extra" });
                break;
            default:
                // An attention_bias computed at run time, of unknown shape: it may hold one value per head.
                graph.Proto.Input.Add(new ValueInfoProto { Name = "scores_bias" });
                attention.Input.Add("");
                attention.Input.Add("");
                attention.Input.Add("scores_bias");
                break;
        }

        graph.Refresh();
        var groups = ChannelGroups.Find(graph).Where(g => g.Heads).ToList();
        output.WriteLine(groups[0].Refusal);
        Assert.Contains(reason, groups[0].Refusal);
        Assert.Null(groups[1].Refusal);
    }

    /// <summary>A constant attention_bias with one slice per head loses the removed heads' slices.</summary>
    [Fact]
    public void A_constant_per_head_attention_bias_is_cut_with_the_heads()
    {
        var model = Load(Name);
        var attention = Attentions(model)[0];
        var values = Enumerable.Range(0, 4 * 16 * 16).Select(i => (float)Math.Sin(i)).ToArray();
        model.Graph.AddInitializer(OnnxTensors.Create("scores_bias", values, 1, 4, 16, 16));
        attention.Input.Add("");
        attention.Input.Add("");
        attention.Input.Add("scores_bias");
        model.Graph.Refresh();
        var original = new OnnxModel(model.Proto.Clone());
        var group = ChannelGroups.Find(model.Graph).First(g => g.Heads);
        Assert.Null(group.Refusal);
        Mask(original, attention.Input[1], 1, [0], 2 * Width);
        Mask(original, attention.Input[2], 0, [0], 2 * Width);
        ChannelSurgery.Remove(model, group, [1, 2, 3]);
        Assert.Equal([1L, 3, 16, 16], model.Graph.GetInitializer("scores_bias")!.Dims.ToArray());
        AssertSameOutputs(original, model, 2);
    }

    private static string Spec(double sparsity, string include) => $$"""
        { "data": { "calibration": { "path": {{SpecFiles.Quote(Fixture("calibration.npz"))}} },
                    "evaluation": { "path": {{SpecFiles.Quote(Fixture("evaluation.npz"))}} } },
          "constraints": { "minAgreement": 0 },
          "steps": [ { "prune": { "method": "obs", "pattern": "channel", "scope": "layer", "sparsity": {{sparsity}},
                                  "include": [ "{{include}}" ] } } ] }
        """;

    /// <summary>The prune step on the encoder: heads of both Attention ops go, the report shows it, and the same spec writes the same bytes twice.</summary>
    [Theory]
    [InlineData(Name, 0.25, 3, 0.9)]
    [InlineData(Name, 0.5, 2, 0.8)]
    [InlineData(MultiHead, 0.5, 2, 0.8)]
    public void The_encoder_loses_heads_and_the_same_spec_writes_the_same_bytes_twice(string name, double sparsity, int kept, double minCosine)
    {
        var first = Path.Combine(Dir, "first.onnx");
        var second = Path.Combine(Dir, "second.onnx");
        var include = name == Name ? "*/attention/Attention" : "*/attention/*/MatMul";
        var report = CompressionPipeline.Run(Fixture(name), SpecFiles.Load(Dir, Spec(sparsity, include)), first, measureLatency: false);
        CompressionPipeline.Run(Fixture(name), SpecFiles.Load(Dir, Spec(sparsity, include)), second, measureLatency: false);
        foreach (var note in report.Notes.Where(n => n.Contains("channel", StringComparison.Ordinal)))
        {
            output.WriteLine(note);
        }

        Assert.Contains(report.Notes, n => n.Contains($"2 attention blocks, {2 * (4 - kept)} of 8 heads removed", StringComparison.Ordinal));
        var model = OnnxModel.Load(first);
        foreach (var attention in Attentions(model))
        {
            Assert.Equal(kept, attention.Int("num_heads", 0));
            // The Attention's packed weights, or the MultiHeadAttention's key projection.
            var weight = name == Name ? attention.Input[1] : model.Graph.GetProducer(attention.Input[1])!.Input[1];
            Assert.Equal([Width, (name == Name ? 3 : 1) * kept * HeadSize], model.Graph.GetInitializer(weight)!.Dims.ToArray());
        }

        for (var layer = 0; layer < 2; layer++)
        {
            var o = model.Graph.Nodes.Single(n => n.Name == $"/layer.{layer}/attention/output/MatMul");
            Assert.Equal([kept * HeadSize, Width], model.Graph.GetInitializer(o.Input[1])!.Dims.ToArray());
            var projection = Assert.Single(report.Layers, l => l.Weight == (name == Name ? $"layer.{layer}.attention.qkv.weight" : $"layer.{layer}.attention.value.weight"));
            Assert.Equal(name == Name ? "Attention" : "MatMul", projection.OpType);
            Assert.Equal(1 - kept / 4.0, projection.Sparsity, 6);
            Assert.Equal(1 - kept / 4.0, Assert.Single(report.Layers, l => l.Weight == $"layer.{layer}.attention.output.weight").Sparsity, 6);
        }

        var stages = report.Stages!;
        var cosine = report.Metrics!.MeanCosine!.Value;
        output.WriteLine($"{name} at {sparsity:P0}: bytes {report.Size.OriginalBytes:N0} -> {report.Size.CompressedBytes:N0}, multiply-adds {stages[0].MultiplyAdds:N0} -> {stages[^1].MultiplyAdds:N0}, mean cosine {cosine:F4}");
        Assert.True(stages[^1].MultiplyAdds < stages[0].MultiplyAdds, "fewer multiply-adds");
        Assert.True(report.Size.CompressedBytes < report.Size.OriginalBytes, "fewer bytes");
        // Random weights give every head a share of the output: half of them gone costs more than a trained model's would.
        Assert.True(cosine > minCosine, $"mean cosine {cosine}");
        Assert.Equal(File.ReadAllBytes(first), File.ReadAllBytes(second));
    }

    /// <summary>The multiply-adds of the op: x·W for q|k|v, Q·Kᵀ and P·V, per sample of 16 positions.</summary>
    [Fact]
    public void The_attention_op_counts_its_projection_and_its_two_products()
    {
        var model = Load(Name);
        var data = CalibrationSet.Load(Fixture("calibration.npz"), model, null, 2, 0);
        var counts = FlopCount.PerNode(model, data);
        const long T = 16;
        Assert.Equal(T * ((Width * 3 * Width) + (T * 2 * Width)), counts[Attentions(model)[0].Output[0]]);
    }
}
