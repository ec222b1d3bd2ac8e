using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Passes.Pruning.Channels;
using Compress.Core.Tests.TestSupport;
using Compress.Core.Torch;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Core.Tests.Passes.Pruning;

/// <summary>
/// Attention heads as a dependency group (algorithms.md §14): a small multi-head attention block made with the graph
/// builder, its heads found, some removed physically, and the pruned graph run in ONNX Runtime against the original
/// with those heads masked (their V columns and V bias zero, so their context is zero): the outputs match to float
/// rounding.
/// </summary>
public sealed class AttentionHeadGroupTests : TempDirectoryTest
{
    private const int Batch = 2;
    private const int Tokens = 5;
    private const int Embedding = 16;
    private const int Heads = 4;
    private const int QueryWidth = 4;
    private const int ValueWidth = 3;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Removing_heads_matches_the_original_with_those_heads_masked(bool sliceShapes)
    {
        var model = Attention(new Random(1), dynamicHeadCount: false, sliceShapes: sliceShapes);
        var groups = ChannelGroups.Find(model.Graph);
        var group = Assert.Single(groups, g => g.Heads);
        Assert.Null(group.Refusal);
        Assert.Equal(Heads, group.Channels);
        Assert.Equal(["k", "q", "v"], group.Producers.Select(OnnxGraph.Describe).Order());
        Assert.Contains(group.Consumers, s => s.Initializer == "wo" && s.Axis == 0 && s.Stride == ValueWidth);
        Assert.Contains(group.Slices, s => s.Initializer == "head_bias" && s.Axis == 0 && s.Stride == 1);

        var original = new OnnxModel(model.Proto.Clone());
        long[] removed = [1, 3];
        Mask(original, "wv", 1, removed, ValueWidth);
        Mask(original, "bv", 0, removed, ValueWidth);
        ChannelSurgery.Remove(model, group, [0, 2]);

        Assert.Equal([Embedding, 2L * QueryWidth], Dims(model, "wq"));
        Assert.Equal([Embedding, 2L * QueryWidth], Dims(model, "wk"));
        Assert.Equal([Embedding, 2L * ValueWidth], Dims(model, "wv"));
        Assert.Equal([2L * ValueWidth], Dims(model, "bv"));
        Assert.Equal([2L * ValueWidth, Embedding], Dims(model, "wo"));
        Assert.Equal([2L, 1, 1], Dims(model, "head_bias"));
        if (sliceShapes)
        {
            Assert.Equal([2L, QueryWidth], Longs(model, model.Graph.Nodes.Single(n => n.Name == "q_split").Input[1]));
            Assert.Equal([2L * ValueWidth], Longs(model, model.Graph.Nodes.Single(n => n.Name == "merge_split").Input[1]));
            Assert.Equal([0L, 0, 2, QueryWidth], Longs(model, model.Graph.Nodes.Single(n => n.Name == "split_k").Input[1]));
        }
        else
        {
            // The shape [0, 0, 4, 4] q and k shared: each has its own now, and the shared one is gone.
            Assert.Null(model.Graph.GetInitializer("qk_shape"));
            Assert.Equal([0L, 0, 2, QueryWidth], Longs(model, model.Graph.Nodes.Single(n => n.Name == "split_q").Input[1]));
            Assert.Equal([0L, 0, 2, QueryWidth], Longs(model, model.Graph.Nodes.Single(n => n.Name == "split_k").Input[1]));
            Assert.Equal([0L, 0, 2L * ValueWidth], Longs(model, model.Graph.Nodes.Single(n => n.Name == "merge").Input[1]));
        }

        Assert.Equal([2L], Longs(model, model.Graph.Nodes.Single(n => n.Name == "v_split").Input[2]));
        Assert.Null(model.Graph.GetInitializer("heads")); // its Unsqueeze went with it
        Assert.DoesNotContain(model.Graph.Nodes, n => n.Name == "heads1");
        AssertSameOutputs(original, model);

        // Found again on the pruned graph: two heads, and they can go down to one.
        var again = Assert.Single(ChannelGroups.Find(model.Graph), g => g.Heads);
        Assert.Null(again.Refusal);
        Assert.Equal(2, again.Channels);
        var twice = new OnnxModel(model.Proto.Clone());
        Mask(twice, "wv", 1, [0], ValueWidth);
        Mask(twice, "bv", 0, [0], ValueWidth);
        ChannelSurgery.Remove(model, again, [1]);
        AssertSameOutputs(twice, model);
    }

    [Fact]
    public void A_head_count_computed_at_run_time_leaves_the_heads_whole_with_the_reason()
    {
        var model = Attention(new Random(2), dynamicHeadCount: true);
        var group = Assert.Single(ChannelGroups.Find(model.Graph), g => g.Heads);
        Assert.Contains("the head count of 'split_v' is not a constant the engine can find", group.Refusal);
    }

    [Fact]
    public void A_mask_with_one_value_per_head_leaves_the_heads_whole()
    {
        var model = Attention(new Random(3), dynamicHeadCount: false, maskPerHead: true);
        var group = Assert.Single(ChannelGroups.Find(model.Graph), g => g.Heads);
        Assert.Contains("may hold one value per head", group.Refusal);
    }

    /// <summary>
    /// <c>scope: "global"</c> ranks all channels against one budget, where a head (D columns of each of W_q, W_k, W_v and D
    /// rows of o) would count as one channel: the heads are left whole with the reason; scope "layer" removes them.
    /// </summary>
    [Theory]
    [InlineData("global", false)]
    [InlineData("layer", true)]
    public void Scope_global_leaves_the_heads_whole_with_the_reason(string scope, bool removed)
    {
        var source = Path.Combine(Dir, "attention.onnx");
        Attention(new Random(5), dynamicHeadCount: false).Save(source);
        var spec = $$"""
            { "steps": [ { "prune": { "method": "magnitude", "pattern": "channel", "scope": "{{scope}}", "sparsity": 0.5 } } ] }
            """;
        var output = Path.Combine(Dir, "pruned.onnx");
        var report = CompressionPipeline.Run(source, SpecFiles.Load(Dir, spec), output, measureLatency: false);
        var wq = OnnxModel.Load(output).Graph.GetInitializer("wq")!;
        if (removed)
        {
            Assert.Contains(report.Notes, n => n.Contains("1 attention blocks, 2 of 4 heads removed", StringComparison.Ordinal));
            Assert.Equal([Embedding, 2L * QueryWidth], wq.Dims.ToArray());
        }
        else
        {
            Assert.Contains(report.Notes, n => n.Contains("q (attention heads are cut per layer: use scope \"layer\" or an allocation)", StringComparison.Ordinal));
            Assert.Equal([Embedding, (long)Heads * QueryWidth], wq.Dims.ToArray());
        }
    }

    /// <summary>
    /// Shapes the analysis cannot follow leave the block whole with the reason, never an exception: a rank-2 x (the
    /// Gather of v's width would not be rewritten), an x of unknown rank whose projections' shapes are read, a Reshape
    /// with its shape as an attribute, a Transpose whose perm is not a permutation of four axes.
    /// </summary>
    [Theory]
    [InlineData(Variant.RankTwo, "'v_shape' may read the last axis of 'v1', which holds the heads (its rank is 2 or more)")]
    [InlineData(Variant.RankUnknown, "'v_shape' may read the last axis of 'v1', which holds the heads (its rank is 1 or more)")]
    [InlineData(Variant.ShapeAttribute, "the head count of 'split_v' is not a constant the engine can find")]
    [InlineData(Variant.BadPerm, "the perm of 'q_heads' is not a permutation of the four axes")]
    public void Shapes_the_analysis_cannot_follow_leave_the_heads_whole(Variant variant, string reason)
    {
        var model = Attention(new Random(6), dynamicHeadCount: false, variant: variant);
        var group = Assert.Single(ChannelGroups.Find(model.Graph), g => g.Heads);
        Assert.Equal(reason, group.Refusal);
    }

    /// <summary>
    /// The rank of x·W, which the Shape readers' check needs: exact from a graph input through LayerNormalization and a
    /// MatMul, a lower bound through an Add with a value of unknown rank (an Expand to a run-time shape), unknown for that
    /// value itself; a Gather of a [V, C] table by [N, T] ids is rank 3.
    /// </summary>
    [Fact]
    public void The_rank_of_a_projection_is_followed_through_the_graph()
    {
        var model = new GraphBuilder("ranks")
            .Input("x", DataType.Float, "N", Tokens, Embedding).Input("ids", DataType.Int64, "N", Tokens).Input("shape", DataType.Int64, 4)
            .Initializer("scale", Values(new Random(7), Embedding), Embedding).Initializer("w", Values(new Random(8), Embedding * 8), Embedding, 8)
            .Initializer("table", Values(new Random(9), 10 * 8), 10, 8)
            .Node("LayerNormalization", ["x", "scale"], ["n"], "norm")
            .Node("MatMul", ["n", "w"], ["q"], "q")
            .Node("Expand", ["q", "shape"], ["e"], "expand")
            .Node("Add", ["q", "e"], ["sum"], "sum")
            .Node("Gather", ["table", "ids"], ["embedded"], "embedded")
            .Node("Concat", ["sum", "embedded"], ["y"], "y", "", OnnxAttribute.Int("axis", -1))
            .Output("y", DataType.Float, "N", Tokens, 16)
            .Build();
        var memo = new Dictionary<string, int?>();
        Assert.Equal(3, StaticShape.MinRank(model.Graph, "q", memo));
        Assert.Null(StaticShape.MinRank(model.Graph, "e", memo));
        Assert.Equal(3, StaticShape.MinRank(model.Graph, "sum", memo));
        Assert.Equal(3, StaticShape.MinRank(model.Graph, "embedded", memo));
    }

    /// <summary>
    /// Softmax with no axis attribute: from opset 13 its default −1 is the keys; before 13 the default is 1, which
    /// normalises over heads and keys together, so removing a head would change the other heads' probabilities.
    /// (Only the analysis reads the opset here; the graph is not run.)
    /// </summary>
    [Theory]
    [InlineData(12, false, true)]
    [InlineData(12, true, false)]
    [InlineData(13, false, false)]
    public void A_softmax_over_heads_and_keys_before_opset_13_leaves_the_heads_whole(long opset, bool softmaxAxis, bool refused)
    {
        var model = Attention(new Random(4), dynamicHeadCount: false, opset: opset, softmaxAxis: softmaxAxis);
        var group = Assert.Single(ChannelGroups.Find(model.Graph), g => g.Heads);
        if (refused)
        {
            Assert.Equal("'softmax' has no axis at opset 12, so it normalises over axes 1 to 3 (heads and keys together), not the keys", group.Refusal);
        }
        else
        {
            Assert.Null(group.Refusal);
        }
    }

    /// <summary>
    /// y = o(merge(softmax((q·s)·kᵀ / 2 + mask + head_bias)·v)) + bo, with x [N, 5, 16] and mask [N, 1, 5] inputs: q and k
    /// split by one shared constant shape [0, 0, 4, 4], v by a Concat of the runtime batch and length, the Unsqueezed
    /// scalar 'heads' (or, with <paramref name="dynamicHeadCount"/>, v's width / 3 at run time) and [3]; K transposed
    /// twice; the merge to a constant [0, 0, 12]. With <paramref name="sliceShapes"/> q's split and the merge take their
    /// shapes as Hugging Face's exports do: the Shape's leading entries sliced off and [4, 4] or [12] after them. With <paramref name="maskPerHead"/> the mask is [N, 4, 5], one row per head.
    /// </summary>
    private static OnnxModel Attention(Random random, bool dynamicHeadCount, bool maskPerHead = false, bool sliceShapes = false, long opset = 17, bool softmaxAxis = true,
        Variant variant = Variant.None)
    {
        var builder = new GraphBuilder("attention").Opset("", opset);
        switch (variant)
        {
            case Variant.RankTwo:
                builder.Input("x", DataType.Float, Tokens, Embedding);
                break;
            case Variant.RankUnknown:
                builder.Input("x_in", DataType.Float, "N", Tokens, Embedding).Input("x_shape", DataType.Int64, 3)
                    .Node("Expand", ["x_in", "x_shape"], ["x"], "expand");
                break;
            default:
                builder.Input("x", DataType.Float, "N", Tokens, Embedding);
                break;
        }

        builder
            .Input("mask", DataType.Float, "N", maskPerHead ? Heads : 1, Tokens)
            .Initializer("wq", Values(random, Embedding * Heads * QueryWidth), Embedding, Heads * QueryWidth).Initializer("bq", Values(random, Heads * QueryWidth), Heads * QueryWidth)
            .Initializer("wk", Values(random, Embedding * Heads * QueryWidth), Embedding, Heads * QueryWidth).Initializer("bk", Values(random, Heads * QueryWidth), Heads * QueryWidth)
            .Initializer("wv", Values(random, Embedding * Heads * ValueWidth), Embedding, Heads * ValueWidth).Initializer("bv", Values(random, Heads * ValueWidth), Heads * ValueWidth)
            .Initializer("wo", Values(random, Heads * ValueWidth * Embedding), Heads * ValueWidth, Embedding).Initializer("bo", Values(random, Embedding), Embedding)
            .Initializer("qk_shape", new long[] { 0, 0, Heads, QueryWidth }, 4)
            .Initializer("merge_shape", new long[] { 0, 0, Heads * ValueWidth }, 3)
            .Initializer("heads", new long[] { Heads })
            .Initializer("value_width", new long[] { ValueWidth }, 1)
            .Initializer("zero", new long[] { 0 }).Initializer("one", new long[] { 1 }).Initializer("two", new long[] { 2 })
            .Initializer("axes0", new long[] { 0 }, 1).Initializer("axes1", new long[] { 1 }, 1).Initializer("axes2", new long[] { 2 }, 1)
            .Initializer("q_scale", new[] { 1.5f }).Initializer("root", new[] { 2f })
            .Initializer("head_bias", Values(random, Heads), Heads, 1, 1)
            .Node("MatMul", ["x", "wq"], ["q0"], "q").Node("Add", ["q0", "bq"], ["q1"], "q_bias")
            .Initializer("q_heads_width", new long[] { Heads, QueryWidth }, 2).Initializer("merged_width", new long[] { Heads * ValueWidth }, 1)
            .Initializer("start", new long[] { 0 }, 1).Initializer("last", new long[] { -1 }, 1).Initializer("last2", new long[] { -2 }, 1)
            .Node("Shape", ["q1"], ["q_shape"], "q_shape")
            .Node("Slice", ["q_shape", "start", "last"], ["q_lead"], "q_lead")
            .Node("Concat", ["q_lead", "q_heads_width"], ["q_split"], "q_split", "", OnnxAttribute.Int("axis", 0))
            .Node("Reshape", ["q1", sliceShapes ? "q_split" : "qk_shape"], ["q2"], "split_q")
            .Node("Transpose", ["q2"], ["q3"], "q_heads", "", variant == Variant.BadPerm ? OnnxAttribute.Ints("perm", 0, 2, 1, 4) : OnnxAttribute.Ints("perm", 0, 2, 1, 3))
            .Node("Mul", ["q3", "q_scale"], ["q4"], "q_scaled")
            .Node("MatMul", ["x", "wk"], ["k0"], "k").Node("Add", ["bk", "k0"], ["k1"], "k_bias")
            .Node("Reshape", ["k1", "qk_shape"], ["k2"], "split_k")
            .Node("Transpose", ["k2"], ["k3"], "k_heads", "", OnnxAttribute.Ints("perm", 0, 2, 1, 3))
            .Node("Transpose", ["k3"], ["k4"], "k_t", "", OnnxAttribute.Ints("perm", 0, 1, 3, 2))
            .Node("MatMul", ["x", "wv"], ["v0"], "v").Node("Add", ["v0", "bv"], ["v1"], "v_bias")
            .Node("Shape", ["v1"], ["v_shape"], "v_shape")
            .Node("Gather", ["v_shape", "zero"], ["batch"], "batch", "", OnnxAttribute.Int("axis", 0))
            .Node("Gather", ["v_shape", "one"], ["length"], "length", "", OnnxAttribute.Int("axis", 0))
            .Node("Unsqueeze", ["batch", "axes0"], ["batch1"], "batch1")
            .Node("Unsqueeze", ["length", "axes0"], ["length1"], "length1");
        if (dynamicHeadCount)
        {
            builder.Node("Gather", ["v_shape", "two"], ["width"], "width", "", OnnxAttribute.Int("axis", 0))
                .Node("Unsqueeze", ["width", "axes0"], ["width1"], "width1")
                .Node("Div", ["width1", "value_width"], ["heads1"], "heads_at_run_time");
        }
        else
        {
            builder.Node("Unsqueeze", ["heads", "axes0"], ["heads1"], "heads1");
        }

        builder.Node("Concat", ["batch1", "length1", "heads1", "value_width"], ["v_split"], "v_split", "", OnnxAttribute.Int("axis", 0))
            .Node("Reshape", variant == Variant.ShapeAttribute ? ["v1"] : ["v1", "v_split"], ["v2"], "split_v", "",
                variant == Variant.ShapeAttribute ? [OnnxAttribute.Ints("shape", 0, 0, Heads, ValueWidth)] : [])
            .Node("Transpose", ["v2"], ["v3"], "v_heads", "", OnnxAttribute.Ints("perm", 0, 2, 1, 3))
            .Node("MatMul", ["q4", "k4"], ["s0"], "scores")
            .Node("Div", ["s0", "root"], ["s1"], "scale")
            .Node("Unsqueeze", ["mask", maskPerHead ? "axes2" : "axes1"], ["m1"], "mask4")
            .Node("Add", ["s1", "m1"], ["s2"], "masked")
            .Node("Add", ["s2", "head_bias"], ["s3"], "head_bias_add")
            .Node("Softmax", ["s3"], ["p"], "softmax", "", softmaxAxis ? [OnnxAttribute.Int("axis", -1)] : [])
            .Node("MatMul", ["p", "v3"], ["c0"], "context")
            .Node("Transpose", ["c0"], ["c1"], "back", "", OnnxAttribute.Ints("perm", 0, 2, 1, 3))
            .Node("Shape", ["c1"], ["c_shape"], "c_shape")
            .Node("Slice", ["c_shape", "start", "last2"], ["c_lead"], "c_lead")
            .Node("Concat", ["c_lead", "merged_width"], ["merge_split"], "merge_split", "", OnnxAttribute.Int("axis", 0))
            .Node("Reshape", ["c1", sliceShapes ? "merge_split" : "merge_shape"], ["c2"], "merge")
            .Node("MatMul", ["c2", "wo"], ["o0"], "o").Node("Add", ["o0", "bo"], ["y"], "o_bias")
            .Output("y", DataType.Float, "N", Tokens, Embedding);
        return builder.Build();
    }

    /// <summary>A change to the block that the analysis must refuse (or, for <see cref="None"/>, not).</summary>
    public enum Variant
    {
        None,

        /// <summary>x is [T, C]: x·W is rank 2 with the heads on axis 1, which v's split shape reads through Shape → Gather 1.</summary>
        RankTwo,

        /// <summary>x comes from an Expand to a run-time shape: x·W + b is known only to have at least b's one axis.</summary>
        RankUnknown,

        /// <summary>v's split Reshape takes its shape as an attribute (before opset 5).</summary>
        ShapeAttribute,

        /// <summary>q's Transpose has the perm [0, 2, 1, 4].</summary>
        BadPerm,
    }

    private static void Mask(OnnxModel model, string weight, int axis, long[] heads, long stride)
    {
        var tensor = model.Graph.GetInitializer(weight)!;
        var values = model.ToTorch(tensor);
        foreach (var h in heads)
        {
            values.narrow(axis, h * stride, stride).zero_();
        }

        model.ReplaceData(tensor, values.ToOnnx(weight));
    }

    private static void AssertSameOutputs(OnnxModel expected, OnnxModel actual)
    {
        var random = new Random(9);
        var x = Values(random, Batch * Tokens * Embedding);
        // Key positions masked off with −10000, as an encoder's padding mask does.
        var mask = Enumerable.Range(0, Batch * Tokens).Select(i => i % Tokens == Tokens - 1 ? -10000f : 0f).ToArray();
        var a = Run(expected, x, mask);
        var b = Run(actual, x, mask);
        Assert.Equal(a.Length, b.Length);
        var scale = a.Max(Math.Abs);
        var worst = a.Zip(b, (p, q) => Math.Abs(p - q)).Max();
        Assert.True(worst <= 1e-5f * Math.Max(1, scale), $"largest difference {worst} (scale {scale})");
    }

    private static float[] Run(OnnxModel model, float[] x, float[] mask)
    {
        using var options = new SessionOptions { IntraOpNumThreads = 1, GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL };
        using var session = new InferenceSession(model.Proto.ToByteArray(), options);
        using var input = OrtValue.CreateTensorValueFromMemory(x, [Batch, Tokens, Embedding]);
        using var maskValue = OrtValue.CreateTensorValueFromMemory(mask, [Batch, 1, Tokens]);
        using var results = session.Run(new RunOptions(), ["x", "mask"], [input, maskValue], ["y"]);
        return results[0].GetTensorDataAsSpan<float>().ToArray();
    }

    private static long[] Dims(OnnxModel model, string name) => model.Graph.GetInitializer(name)!.Dims.ToArray();

    private static long[] Longs(OnnxModel model, string name)
    {
        using var data = model.OpenTensorData(model.Graph.GetInitializer(name)!);
        return data.As<long>().ToArray();
    }

    private static float[] Values(Random random, int count) => Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
}
