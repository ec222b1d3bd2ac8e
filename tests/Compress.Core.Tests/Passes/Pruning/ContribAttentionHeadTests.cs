using Compress.Core.Calibration;
using Compress.Core.Evaluation;
using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Passes.Pruning.Channels;
using Compress.Core.Tests.TestSupport;
using Compress.Core.Torch;
using Xunit.Abstractions;
using static Compress.Core.Tests.Passes.Pruning.FusedAttentionHeadTests;

namespace Compress.Core.Tests.Passes.Pruning;

/// <summary>
/// Attention heads of ONNX Runtime's fused com.microsoft.Attention (tests/fixtures/attention/bert_attention.onnx, made by
/// eng/fixtures/make_contrib_attention.py): a 2-layer BERT-style encoder whose q, k and v are packed in one [64, 192]
/// weight of the op, 4 heads of 16; and the same with com.microsoft.MultiHeadAttention (bert_multihead.onnx), q, k and v
/// three MatMuls whose biases are packed in the op's bias input. Other forms: an Attention whose v is narrower than q and
/// k (qkv_hidden_sizes [64, 64, 32]), one whose output goes through a Reshape to rows into a Gemm, and MultiHeadAttention
/// with packed q/k/v ([B, T, 4, 3, 16]) or packed k/v ([B, T, 4, 2, 16]). Removing heads must give the original model with those heads' V columns and V bias
/// zeroed, in ONNX Runtime, to float rounding; what the engine cannot rewrite leaves the op whole, with the reason.
/// </summary>
public sealed class ContribAttentionHeadTests(ITestOutputHelper output) : TempDirectoryTest
{
    private const long Width = 64;
    private const long HeadSize = 16;
    private const string Name = "bert_attention.onnx";
    private const string MultiHead = "bert_multihead.onnx";
    private const string ValueWidth = "bert_attention_v.onnx";
    private const string GemmOutput = "bert_attention_gemm.onnx";
    private const string PackedQkv = "bert_packed_qkv.onnx";
    private const string PackedKv = "bert_packed_kv.onnx";

    // The tests cut weights with TorchSharp before any pipeline has loaded it (patched where libstdc++ is older).
    static ContribAttentionHeadTests() => TorchRuntime.EnsureLoaded();

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
    [InlineData("sizes", "(80, 64, 48) are not q and k of one width and v, together its 192 weight columns")]
    [InlineData("reader", "reads the output of '/layer.0/attention/Attention' besides its output projection")]
    [InlineData("bias", "may hold one value per head")]
    [InlineData("present", "carries past and present key/value state", MultiHead)]
    [InlineData("projection", "reach the graph output '/layer.0/attention/key/MatMul_output_0'", MultiHead)]
    [InlineData("rows", "'/layer.0/attention/output/Reshape' does not reshape the output to a constant [rows, 64]", GemmOutput)]
    [InlineData("packed", "'/layer.0/attention/qkv/Reshape' does not reshape to a constant [B, S, 4, 3, 16]", PackedQkv)]
    [InlineData("kv bias", "has a bias with a packed key and value, which ONNX Runtime does not allow", PackedKv)]
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
                attention.Attribute.Add(OnnxAttribute.Ints("qkv_hidden_sizes", 80, 64, 48));
                break;
            case "present":
                attention.Output.Add("present_key");
                break;
            case "projection":
                graph.Proto.Output.Add(new ValueInfoProto { Name = "/layer.0/attention/key/MatMul_output_0" });
                break;
            case "rows" or "packed":
                // The shape computed at run time (a graph input here): its width is not known to be the heads'.
                graph.Proto.Input.Add(new ValueInfoProto { Name = "runtime_shape" });
                graph.Nodes.Single(n => n.Name == (change == "rows" ? "/layer.0/attention/output/Reshape" : "/layer.0/attention/qkv/Reshape")).Input[1] = "runtime_shape";
                break;
            case "kv bias":
                graph.AddInitializer(OnnxTensors.Create("kv_bias", new float[192], 192));
                attention.Input.Add("");
                attention.Input.Add("kv_bias");
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

    /// <summary>Where head h's V lies in a layer of <paramref name="name"/>: (initializer, axis, first index, size) in its weight and its bias.</summary>
    private static (string Name, int Axis, long Start, long Size)[] ValueOf(string name, int layer, long h)
    {
        var l = $"layer.{layer}.attention";
        return name switch
        {
            // v after q and k (64 each), 8 per head.
            ValueWidth => [($"{l}.qkv.weight", 1, 128 + (8 * h), 8), ($"{l}.qkv.bias", 0, 128 + (8 * h), 8)],
            // Columns [head, q|k|v, 16]; the op's bias (layer 0) is q | k | v, the Add's (layer 1) the columns' layout.
            PackedQkv => [($"{l}.qkv.weight", 1, (48 * h) + 32, 16), layer == 0 ? ($"{l}.bias", 0, 128 + (16 * h), 16) : ($"{l}.qkv.bias", 0, (48 * h) + 32, 16)],
            PackedKv => [($"{l}.kv.weight", 1, (32 * h) + 16, 16), ($"{l}.kv.bias", 0, (32 * h) + 16, 16)],
            _ => [($"{l}.qkv.weight", 1, 128 + (16 * h), 16), ($"{l}.qkv.bias", 0, 128 + (16 * h), 16)],
        };
    }

    /// <summary>Zeroes the V of <paramref name="heads"/> in both layers: those heads then add nothing to the output.</summary>
    private static void MaskValues(OnnxModel model, string name, long[] heads)
    {
        foreach (var (weight, axis, start, size) in Enumerable.Range(0, 2).SelectMany(l => heads.SelectMany(h => ValueOf(name, l, h))))
        {
            var tensor = model.Graph.GetInitializer(weight)!;
            var values = model.ToTorch(tensor);
            values.narrow(axis, start, size).zero_();
            model.ReplaceData(tensor, values.ToOnnx(weight));
        }
    }

    /// <summary>
    /// ONNX Runtime's CPU provider does not run MultiHeadAttention's packed layouts: the packed query [B, S, H, 3, D] (or
    /// key [B, S, H, 2, D]) becomes separate [B, S, H·D] inputs, a Split on axis 3 and Reshapes, which is what the
    /// layouts mean (ONNX Runtime's spec). A model without them is copied unchanged.
    /// </summary>
    internal static OnnxModel Unpacked(OnnxModel model)
    {
        var copy = new OnnxModel(model.Proto.Clone());
        var graph = copy.Graph;
        var shape = graph.UniqueName("unpacked_shape");
        foreach (var node in graph.Nodes.Where(n => n.OpType == "MultiHeadAttention").ToList())
        {
            var (input, parts) = node.Input.Count < 2 || node.Input[1].Length == 0 ? (0, 3) : node.Input.Count < 3 || node.Input[2].Length == 0 ? (1, 2) : (0, 0);
            if (parts == 0)
            {
                continue;
            }

            if (graph.GetInitializer(shape) is null)
            {
                graph.AddInitializer(OnnxTensors.Create(shape, new long[] { 0, 0, -1 }, 3));
            }

            var packed = node.Input[input];
            var pieces = Enumerable.Range(0, parts).Select(i => $"{packed}_part{i}").ToArray();
            var split = new NodeProto { OpType = "Split", Name = $"{packed}/Split", Input = { packed }, Output = { pieces }, Attribute = { OnnxAttribute.Int("axis", 3) } };
            var reshapes = pieces.Select(p => new NodeProto { OpType = "Reshape", Name = $"{p}/Reshape", Input = { p, shape }, Output = { $"{p}_rows" } });
            graph.InsertBefore(node, [split, .. reshapes]);
            while (node.Input.Count < 3)
            {
                node.Input.Add("");
            }

            for (var i = 0; i < parts; i++)
            {
                node.Input[input + i] = $"{pieces[i]}_rows";
            }
        }

        graph.Refresh();
        return copy;
    }

    private static long[] Longs(OnnxModel model, string node) => StaticShape.Int64s(model.Graph.GetInitializer(model.Graph.Nodes.Single(n => n.Name == node).Input[1])!)!;

    /// <summary>
    /// v narrower than q and k, the output through a Reshape into a Gemm, packed q/k/v and packed k/v: heads 1 and 3 of
    /// both layers removed give the original with their V zeroed (the packed layouts run as separate inputs).
    /// </summary>
    [Theory]
    [InlineData(ValueWidth, 8)]
    [InlineData(GemmOutput, 16)]
    [InlineData(PackedQkv, 16)]
    [InlineData(PackedKv, 16)]
    public void The_other_forms_lose_heads_as_the_original_with_those_heads_masked(string name, long valueHead)
    {
        var model = Load(name);
        var groups = ChannelGroups.Find(model.Graph).Where(g => g.Heads).ToList();
        Assert.Equal(2, groups.Count);
        Assert.All(groups, g => Assert.Null(g.Refusal));
        Assert.All(groups, g => Assert.Equal(4, g.Channels));

        var original = new OnnxModel(model.Proto.Clone());
        MaskValues(original, name, [1, 3]);
        foreach (var (key, layer) in groups.Select((g, i) => (g.Key, i)).ToList())
        {
            var group = ChannelGroups.Find(model.Graph).Single(g => g.Key == key);
            ChannelSurgery.Remove(model, group, [0, 2]);
            Assert.Equal(2, Attentions(model)[layer].Int("num_heads", 0));
            var o = group.Consumers.Single();
            Assert.Equal(2 * valueHead, model.Graph.GetInitializer(o.Initializer)!.Dims[o.Axis]);
        }

        var graph = model.Graph;
        for (var layer = 0; layer < 2; layer++)
        {
            var (p, l) = ($"/layer.{layer}/attention", $"layer.{layer}.attention");
            switch (name)
            {
                case ValueWidth:
                    Assert.Equal([32L, 32, 16], Attentions(model)[layer].Ints("qkv_hidden_sizes")!);
                    Assert.Equal([Width, 80], graph.GetInitializer($"{l}.qkv.weight")!.Dims.ToArray());
                    break;
                case GemmOutput:
                    // Both layers read one shape constant: each Reshape gets its own, [-1, 32]; the Gemm's weight [64, 32] (transB).
                    Assert.Equal([-1L, 32], Longs(model, $"{p}/output/Reshape"));
                    Assert.Equal([Width, 32], graph.GetInitializer($"{l}.output.weight")!.Dims.ToArray());
                    break;
                case PackedQkv:
                    Assert.Equal([0L, 0, 2, 3, 16], Longs(model, $"{p}/qkv/Reshape"));
                    Assert.Equal([Width, 96], graph.GetInitializer($"{l}.qkv.weight")!.Dims.ToArray());
                    Assert.Equal([96L], graph.GetInitializer(layer == 0 ? $"{l}.bias" : $"{l}.qkv.bias")!.Dims.ToArray());
                    break;
                default:
                    // Layer 1's shape has -1 for the heads: inferred, left as it is.
                    Assert.Equal([0L, 0, layer == 0 ? 2 : -1, 2, 16], Longs(model, $"{p}/kv/Reshape"));
                    Assert.Equal([Width, 64], graph.GetInitializer($"{l}.kv.weight")!.Dims.ToArray());
                    Assert.Equal([Width, 32], graph.GetInitializer($"{l}.query.weight")!.Dims.ToArray());
                    break;
            }
        }

        var worst = AssertSameOutputs(Unpacked(original), Unpacked(model), 3);
        output.WriteLine($"{name}: 2 attention ops, heads 1 and 3 removed: largest difference {worst:E2}");

        // Masking other heads than those removed is told apart (the comparison can fail).
        var wrong = Load(name);
        MaskValues(wrong, name, [1, 2]);
        Assert.Throws<Xunit.Sdk.TrueException>(() => AssertSameOutputs(Unpacked(wrong), Unpacked(model), 3));

        var again = ChannelGroups.Find(model.Graph).Where(g => g.Heads).ToList();
        Assert.All(again, g => Assert.Null(g.Refusal));
        Assert.All(again, g => Assert.Equal(2, g.Channels));
    }

    /// <summary>
    /// The prune step on the packed layouts at 25% and 50% of the heads, data-free (<c>magnitude</c>: calibration and
    /// evaluation run the model in ONNX Runtime's CPU provider, which does not run them): heads go, the same spec writes
    /// the same bytes twice; multiply-adds and the output cosine are measured on the models run as separate inputs.
    /// </summary>
    [Theory]
    [InlineData(PackedQkv, 0.25, 3, 0.85)]
    [InlineData(PackedQkv, 0.5, 2, 0.75)]
    [InlineData(PackedKv, 0.25, 3, 0.85)]
    [InlineData(PackedKv, 0.5, 2, 0.75)]
    public void A_packed_encoder_loses_heads_and_the_same_spec_writes_the_same_bytes_twice(string name, double sparsity, int kept, double minCosine)
    {
        var spec = $$"""
            { "steps": [ { "prune": { "method": "magnitude", "pattern": "channel", "scope": "layer", "sparsity": {{sparsity}},
                                      "include": [ "*/attention/*/MatMul" ] } } ] }
            """;
        var (first, second) = (Path.Combine(Dir, "first.onnx"), Path.Combine(Dir, "second.onnx"));
        var report = CompressionPipeline.Run(Fixture(name), SpecFiles.Load(Dir, spec), first, measureLatency: false);
        CompressionPipeline.Run(Fixture(name), SpecFiles.Load(Dir, spec), second, measureLatency: false);
        Assert.Contains(report.Notes, n => n.Contains($"2 attention blocks, {2 * (4 - kept)} of 8 heads removed", StringComparison.Ordinal));
        Assert.Equal(File.ReadAllBytes(first), File.ReadAllBytes(second));

        var original = Unpacked(OnnxModel.Load(Fixture(name)));
        var pruned = Unpacked(OnnxModel.Load(first));
        Assert.All(Attentions(pruned), a => Assert.Equal(kept, a.Int("num_heads", 0)));
        var sample = CalibrationSet.Load(Fixture("evaluation.npz"), original, null, 1, 0);
        var (before, after) = (FlopCount.MultiplyAdds(original, sample), FlopCount.MultiplyAdds(pruned, sample));
        var cosine = ModelComparison.Compare(original, pruned, CalibrationSet.Load(Fixture("evaluation.npz"), original, null, null, 0)).MeanCosine!.Value;
        output.WriteLine($"{name} at {sparsity:P0}: bytes {report.Size.OriginalBytes:N0} -> {report.Size.CompressedBytes:N0}, multiply-adds {before:N0} -> {after:N0}, mean cosine {cosine:F4}");
        Assert.True(report.Size.CompressedBytes < report.Size.OriginalBytes, "fewer bytes");
        Assert.True(after < before, "fewer multiply-adds");
        // Magnitude, not the calibrated choice of the other forms: the same random encoder keeps less of its output.
        Assert.True(cosine > minCosine, $"mean cosine {cosine}");
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
    [InlineData(ValueWidth, 0.25, 3, 0.9)]
    [InlineData(ValueWidth, 0.5, 2, 0.8)]
    [InlineData(GemmOutput, 0.25, 3, 0.9)]
    [InlineData(GemmOutput, 0.5, 2, 0.8)]
    public void The_encoder_loses_heads_and_the_same_spec_writes_the_same_bytes_twice(string name, double sparsity, int kept, double minCosine)
    {
        var first = Path.Combine(Dir, "first.onnx");
        var second = Path.Combine(Dir, "second.onnx");
        var fused = name != MultiHead;
        var include = fused ? "*/attention/Attention" : "*/attention/*/MatMul";
        var report = CompressionPipeline.Run(Fixture(name), SpecFiles.Load(Dir, Spec(sparsity, include)), first, measureLatency: false);
        CompressionPipeline.Run(Fixture(name), SpecFiles.Load(Dir, Spec(sparsity, include)), second, measureLatency: false);
        foreach (var note in report.Notes.Where(n => n.Contains("channel", StringComparison.Ordinal)))
        {
            output.WriteLine(note);
        }

        Assert.Contains(report.Notes, n => n.Contains($"2 attention blocks, {2 * (4 - kept)} of 8 heads removed", StringComparison.Ordinal));
        var model = OnnxModel.Load(first);
        var valueHead = name == ValueWidth ? 8 : HeadSize;
        foreach (var attention in Attentions(model))
        {
            Assert.Equal(kept, attention.Int("num_heads", 0));
            // The Attention's packed weights, or the MultiHeadAttention's key projection.
            var weight = fused ? attention.Input[1] : model.Graph.GetProducer(attention.Input[1])!.Input[1];
            Assert.Equal([Width, fused ? kept * ((2 * HeadSize) + valueHead) : kept * HeadSize], model.Graph.GetInitializer(weight)!.Dims.ToArray());
        }

        for (var layer = 0; layer < 2; layer++)
        {
            // The output projection: a MatMul [C_v, 64], or a Gemm with transB [64, C_v].
            var gemm = name == GemmOutput;
            var o = model.Graph.Nodes.Single(n => n.Name == $"/layer.{layer}/attention/output/{(gemm ? "Gemm" : "MatMul")}");
            Assert.Equal(gemm ? [Width, kept * HeadSize] : [kept * valueHead, Width], model.Graph.GetInitializer(o.Input[1])!.Dims.ToArray());
            var projection = Assert.Single(report.Layers, l => l.Weight == (fused ? $"layer.{layer}.attention.qkv.weight" : $"layer.{layer}.attention.value.weight"));
            Assert.Equal(fused ? "Attention" : "MatMul", projection.OpType);
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
