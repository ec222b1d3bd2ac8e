using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Passes.Pruning.Channels;
using Compress.Core.Torch;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Core.Tests.Passes.Pruning;

/// <summary>
/// One dependency rule per test (algorithms.md §8): a small graph made with the graph builder, its groups found, some
/// channels removed physically, and the pruned graph run in ONNX Runtime against the original with the same channels
/// masked (the consumers' input columns of those channels set to zero): the outputs match to float rounding.
/// </summary>
public sealed class ChannelGroupTests
{
    private const int Batch = 3;

    [Fact]
    public void Residual_add_ties_both_branches_and_a_broadcast_constant_into_one_group()
    {
        // a = relu(convA(x)); b = convB(a) · s (s a [1, 8, 1, 1] constant); y = convC(relu(a + b))
        var random = new Random(1);
        var model = new GraphBuilder("residual")
            .Input("x", DataType.Float, "N", 3, 8, 8)
            .Initializer("wa", Values(random, 8 * 3 * 9), 8, 3, 3, 3).Initializer("ba", Values(random, 8), 8)
            .Initializer("wb", Values(random, 8 * 8 * 9), 8, 8, 3, 3).Initializer("bb", Values(random, 8), 8)
            .Initializer("s", Values(random, 8), 1, 8, 1, 1)
            .Initializer("wc", Values(random, 4 * 8), 4, 8, 1, 1)
            .Node("Conv", ["x", "wa", "ba"], ["a0"], "convA", "", Pads(1))
            .Node("Relu", ["a0"], ["a"], "reluA")
            .Node("Conv", ["a", "wb", "bb"], ["b0"], "convB", "", Pads(1))
            .Node("Mul", ["b0", "s"], ["b"], "scale")
            .Node("Add", ["a", "b"], ["r"], "add")
            .Node("Relu", ["r"], ["r1"], "relu")
            .Node("Conv", ["r1", "wc"], ["y"], "convC")
            .Output("y", DataType.Float, "N", 4, 8, 8)
            .Build();

        var groups = ChannelGroups.Find(model.Graph);
        var group = Assert.Single(groups, g => g.Refusal is null);
        Assert.Equal(["convA", "convB"], group.Producers.Select(OnnxGraph.Describe).Order());
        Assert.Contains(group.Slices, s => s.Initializer == "s" && s.Axis == 1);
        Assert.Contains(groups, g => g.Seed.Name == "convC" && g.Refusal!.Contains("graph output"));

        AssertPrunedMatchesMasked(model, group, [1, 2, 5], [("wb", 1, 1), ("wc", 1, 1)], "s");
    }

    [Fact]
    public void Concat_offsets_each_input_by_the_channels_before_it_and_groups_prune_one_after_another()
    {
        // y = convC(relu(concat(convA(x), convB(x))))
        var random = new Random(2);
        var model = new GraphBuilder("concat")
            .Input("x", DataType.Float, "N", 3, 6, 6)
            .Initializer("wa", Values(random, 4 * 3 * 9), 4, 3, 3, 3).Initializer("ba", Values(random, 4), 4)
            .Initializer("wb", Values(random, 6 * 3 * 9), 6, 3, 3, 3).Initializer("bb", Values(random, 6), 6)
            .Initializer("wc", Values(random, 5 * 10 * 9), 5, 10, 3, 3)
            .Node("Conv", ["x", "wa", "ba"], ["a"], "convA", "", Pads(1))
            .Node("Conv", ["x", "wb", "bb"], ["b"], "convB", "", Pads(1))
            .Node("Concat", ["a", "b"], ["c"], "concat", "", OnnxAttribute.Int("axis", 1))
            .Node("Relu", ["c"], ["c1"], "relu")
            .Node("Conv", ["c1", "wc"], ["y"], "convC", "", Pads(1))
            .Output("y", DataType.Float, "N", 5, 6, 6)
            .Build();

        var groups = ChannelGroups.Find(model.Graph).Where(g => g.Refusal is null).ToList();
        Assert.Equal(2, groups.Count);
        var b = groups.Single(g => g.Seed.Name == "convB");
        Assert.Contains(b.Consumers, s => s.Initializer == "wc" && s.Offset == 4);

        var original = Clone(model);
        ChannelSurgery.Remove(model, groups.Single(g => g.Seed.Name == "convA"), [0, 3]); // a loses 1 and 2
        var again = ChannelGroups.Find(model.Graph).Single(g => g.Seed.Name == "convB");
        Assert.Contains(again.Consumers, s => s.Initializer == "wc" && s.Offset == 2); // convA's two channels now come first
        ChannelSurgery.Remove(model, again, [0, 2, 5]); // b loses 1, 3 and 4

        Mask(original, "wc", 1, [1, 2, 4 + 1, 4 + 3, 4 + 4], 1);
        AssertSameOutputs(original, model);
        Assert.Equal([5, 5, 3, 3], Dims(model, "wc"));
    }

    [Fact]
    public void Depthwise_conv_and_batch_norm_pass_channels_through_and_lower_group()
    {
        // y = convC(relu(bn(depthwise(relu(convA(x))))))
        var random = new Random(3);
        var model = new GraphBuilder("depthwise")
            .Input("x", DataType.Float, "N", 3, 6, 6)
            .Initializer("wa", Values(random, 8 * 3), 8, 3, 1, 1).Initializer("ba", Values(random, 8), 8)
            .Initializer("wd", Values(random, 8 * 9), 8, 1, 3, 3).Initializer("bd", Values(random, 8), 8)
            .Initializer("gamma", Values(random, 8), 8).Initializer("beta", Values(random, 8), 8)
            .Initializer("mean", Values(random, 8), 8).Initializer("var", Values(random, 8).Select(v => v + 1.5f).ToArray(), 8)
            .Initializer("wc", Values(random, 4 * 8), 4, 8, 1, 1)
            .Node("Conv", ["x", "wa", "ba"], ["a0"], "convA")
            .Node("Relu", ["a0"], ["a"], "reluA")
            .Node("Conv", ["a", "wd", "bd"], ["d"], "depthwise", "", Pads(1), OnnxAttribute.Int("group", 8))
            .Node("BatchNormalization", ["d", "gamma", "beta", "mean", "var"], ["n"], "bn")
            .Node("Relu", ["n"], ["n1"], "relu")
            .Node("Conv", ["n1", "wc"], ["y"], "convC")
            .Output("y", DataType.Float, "N", 4, 6, 6)
            .Build();

        var group = Assert.Single(ChannelGroups.Find(model.Graph), g => g.Refusal is null);
        Assert.Equal(["convA"], group.Producers.Select(OnnxGraph.Describe));
        AssertPrunedMatchesMasked(model, group, [0, 3, 4, 7], [("wc", 1, 1)], "wd", "gamma", "var");
        Assert.Equal(4, model.Graph.Nodes.Single(n => n.Name == "depthwise").Int("group", 0));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Flatten_or_reshape_into_a_gemm_maps_each_channel_to_its_hw_features(bool reshape)
    {
        // y = gemm(flatten(maxpool(relu(conv(x))))) — or a Reshape to [0, 96] into a MatMul
        var random = new Random(4);
        var builder = new GraphBuilder("flatten")
            .Input("x", DataType.Float, "N", 1, 8, 8)
            .Initializer("w", Values(random, 6 * 9), 6, 1, 3, 3).Initializer("b", Values(random, 6), 6)
            .Initializer("fc", Values(random, 10 * 96), reshape ? new long[] { 96, 10 } : new long[] { 10, 96 }).Initializer("fcb", Values(random, 10), 10)
            .Node("Conv", ["x", "w", "b"], ["c"], "conv", "", Pads(1))
            .Node("Relu", ["c"], ["r"], "relu")
            .Node("MaxPool", ["r"], ["p"], "pool", "", OnnxAttribute.Ints("kernel_shape", 2, 2), OnnxAttribute.Ints("strides", 2, 2));
        if (reshape)
        {
            builder.Initializer("shape", new long[] { 0, 96 }, 2)
                .Node("Reshape", ["p", "shape"], ["f"], "reshape")
                .Node("MatMul", ["f", "fc"], ["m"], "fc1")
                .Node("Add", ["m", "fcb"], ["y"], "bias");
        }
        else
        {
            builder.Node("Flatten", ["p"], ["f"], "flatten").Node("Gemm", ["f", "fc", "fcb"], ["y"], "fc1", "", OnnxAttribute.Int("transB", 1));
        }

        var model = builder.Output("y", DataType.Float, "N", 10).Build();
        var group = Assert.Single(ChannelGroups.Find(model.Graph), g => g.Refusal is null);
        Assert.Contains(group.Consumers, s => s.Initializer == "fc" && s.Stride == 16);
        AssertPrunedMatchesMasked(model, group, [1, 4], [("fc", reshape ? 0 : 1, 16)]);
        if (reshape)
        {
            using var data = model.OpenTensorData(model.Graph.GetInitializer("shape")!);
            Assert.Equal([0L, 32L], data.As<long>().ToArray());
        }
    }

    [Theory]
    [InlineData("Resize", 17)]
    [InlineData("Resize", 10)]
    [InlineData("Upsample", 9)]
    [InlineData("Upsample", 7)]
    public void Resize_by_constant_scales_passes_channels_through_into_a_top_down_add(string op, long opset)
    {
        // A feature pyramid's top-down path: y = convC(relu(resize(convA(x), ×2) + convB(x)))
        var random = new Random(6);
        var builder = new GraphBuilder("fpn").Opset("", opset)
            .Input("x", DataType.Float, "N", 3, 8, 8)
            .Initializer("wa", Values(random, 6 * 3 * 9), 6, 3, 3, 3).Initializer("ba", Values(random, 6), 6)
            .Initializer("wb", Values(random, 6 * 3 * 9), 6, 3, 3, 3).Initializer("bb", Values(random, 6), 6)
            .Initializer("scales", new[] { 1f, 1f, 2f, 2f }, 4)
            .Initializer("wc", Values(random, 4 * 6), 4, 6, 1, 1)
            .Node("Conv", ["x", "wa", "ba"], ["a"], "convA", "", Pads(1), OnnxAttribute.Ints("strides", 2, 2));
        builder = opset switch
        {
            >= 11 => builder.Node(op, ["a", "", "scales"], ["u"], "up", "", OnnxAttribute.String("mode", "nearest")),
            >= 9 => builder.Node(op, ["a", "scales"], ["u"], "up", "", OnnxAttribute.String("mode", "nearest")),
            _ => builder.Node(op, ["a"], ["u"], "up", "", OnnxAttribute.String("mode", "nearest"), OnnxAttribute.Floats("scales", 1, 1, 2, 2)),
        };
        var model = builder
            .Node("Conv", ["x", "wb", "bb"], ["b"], "convB", "", Pads(1))
            .Node("Add", ["u", "b"], ["s"], "add")
            .Node("Relu", ["s"], ["s1"], "relu")
            .Node("Conv", ["s1", "wc"], ["y"], "convC")
            .Output("y", DataType.Float, "N", 4, 8, 8)
            .Build();

        var group = Assert.Single(ChannelGroups.Find(model.Graph), g => g.Refusal is null);
        Assert.Equal(["convA", "convB"], group.Producers.Select(OnnxGraph.Describe).Order());
        AssertPrunedMatchesMasked(model, group, [0, 2, 3], [("wc", 1, 1)], "ba", "bb");
        Assert.Equal([1f, 1f, 2f, 2f], model.ToTorch(model.Graph.GetInitializer("scales")!).data<float>().ToArray()); // the scales stay as they were
    }

    [Theory]
    [InlineData("sizes", "sets its output sizes, which name the channel count")]
    [InlineData("channel scale", "scales the batch or channel axis, or by values the engine cannot read")]
    [InlineData("crop", "crops a region of every axis")]
    [InlineData("half position", "reads each channel half a position on (tf_half_pixel_for_nn)")]
    public void A_resize_that_names_the_channel_count_or_moves_channels_leaves_the_group_whole(string form, string reason)
    {
        var random = new Random(7);
        var builder = new GraphBuilder("resize")
            .Input("x", DataType.Float, 1, 3, 4, 4)
            .Initializer("w", Values(random, 6 * 3), 6, 3, 1, 1)
            .Initializer("w2", Values(random, 6 * 6), 6, 6, 1, 1)
            .Initializer("roi", new[] { 0f, 0f, 0f, 0f, 1f, 0.5f, 1f, 1f }, 8)
            .Initializer("sizes", new[] { 1L, 6, 8, 8 }, 4)
            .Initializer("channels", new[] { 1f, 2f, 2f, 2f }, 4)
            .Initializer("scales", new[] { 1f, 1f, 2f, 2f }, 4);
        builder = form switch
        {
            "sizes" => builder.Node("Resize", ["c", "", "", "sizes"], ["u"], "up"),
            "channel scale" => builder.Node("Resize", ["c", "", "channels"], ["u"], "up"),
            "crop" => builder.Node("Resize", ["c", "roi", "scales"], ["u"], "up", "", OnnxAttribute.String("coordinate_transformation_mode", "tf_crop_and_resize")),
            _ => builder.Node("Resize", ["c", "", "scales"], ["u"], "up", "", OnnxAttribute.String("coordinate_transformation_mode", "tf_half_pixel_for_nn"),
                OnnxAttribute.String("mode", "linear")),
        };
        var model = builder
            .Node("Conv", ["x", "w"], ["c"], "conv")
            .Node("Conv", ["u", "w2"], ["y"], "conv2")
            .Output("y", DataType.Float, 1, 6, 8, 8)
            .Build();

        var group = ChannelGroups.Find(model.Graph).Single(g => g.Seed.Name == "conv");
        Assert.Equal($"'up' (Resize) {reason}", group.Refusal);
    }

    /// <summary>A Concat after a Resize that sets its sizes: the Resize's channel count is not known, so the group after it is left whole, not cut at a guessed offset.</summary>
    [Fact]
    public void A_concat_after_a_resize_by_sizes_does_not_guess_its_channel_count()
    {
        var random = new Random(8);
        var model = new GraphBuilder("sizes")
            .Input("x", DataType.Float, 1, 3, 4, 4)
            .Initializer("wa", Values(random, 6 * 3), 6, 3, 1, 1)
            .Initializer("wb", Values(random, 5 * 3 * 4), 5, 3, 2, 2)
            .Initializer("sizes", new[] { 1L, 6, 4, 4 }, 4)
            .Initializer("wc", Values(random, 4 * 11), 4, 11, 1, 1)
            .Node("Conv", ["x", "wa"], ["a"], "convA", "", OnnxAttribute.Ints("strides", 2, 2))
            .Node("Resize", ["a", "", "", "sizes"], ["u"], "up")
            .Node("Conv", ["x", "wb"], ["b"], "convB", "", OnnxAttribute.Ints("pads", 0, 0, 1, 1))
            .Node("Concat", ["u", "b"], ["c"], "concat", "", OnnxAttribute.Int("axis", 1))
            .Node("Conv", ["c", "wc"], ["y"], "convC")
            .Output("y", DataType.Float, 1, 4, 4, 4)
            .Build();

        Assert.Null(ChannelGroups.ChannelCount(model.Graph, "u"));
        Assert.Contains("whose channel count is not known", ChannelGroups.Find(model.Graph).Single(g => g.Seed.Name == "convB").Refusal);
    }

    [Fact]
    public void A_consumer_reading_the_group_twice_is_left_whole()
    {
        // y = convB(concat(relu(a), sigmoid(a))), a = convA(x): convB's weight would be coupled to convA's channels at
        // offsets 0 and 4, disjoint as a fused q/k/v projection's are, but each slice would refit the whole weight on its
        // own, the second undoing the first; the value holding them twice is refused before (and SliceConflict allows
        // disjoint couplings only for a head group's producers). concat(a, a) is refused as well.
        var random = new Random(6);
        GraphBuilder Build(string second) => new GraphBuilder("self-concat")
            .Input("x", DataType.Float, "N", 3, 4, 4)
            .Initializer("wa", Values(random, 4 * 3), 4, 3, 1, 1)
            .Initializer("wb", Values(random, 5 * 8), 5, 8, 1, 1)
            .Node("Conv", ["x", "wa"], ["a"], "convA")
            .Node("Relu", ["a"], ["r"], "relu")
            .Node("Sigmoid", ["a"], ["s"], "sigmoid")
            .Node("Concat", ["r", second], ["c"], "concat", "", OnnxAttribute.Int("axis", 1))
            .Node("Conv", ["c", "wb"], ["y"], "convB")
            .Output("y", DataType.Float, "N", 5, 4, 4);

        var twoPaths = Build("s").Build();
        Assert.Equal("'c' holds its channels at two offsets", ChannelGroups.Find(twoPaths.Graph).Single(g => g.Seed.Name == "convA").Refusal);
        var same = Build("r").Build();
        Assert.Equal("'concat' concatenates its channels with themselves", ChannelGroups.Find(same.Graph).Single(g => g.Seed.Name == "convA").Refusal);
    }

    [Fact]
    public void A_group_read_by_an_op_it_cannot_follow_is_left_whole_with_the_reason()
    {
        var random = new Random(5);
        var model = new GraphBuilder("transpose")
            .Input("x", DataType.Float, "N", 3, 4, 4)
            .Initializer("w", Values(random, 6 * 3), 6, 3, 1, 1)
            .Initializer("w2", Values(random, 6 * 6), 6, 6, 1, 1)
            .Node("Conv", ["x", "w"], ["c"], "conv")
            .Node("Transpose", ["c"], ["t"], "transpose", "", OnnxAttribute.Ints("perm", 0, 2, 3, 1))
            .Node("Conv", ["c", "w2"], ["y"], "conv2")
            .Output("t", DataType.Float, "N", 4, 4, 6)
            .Output("y", DataType.Float, "N", 6, 4, 4)
            .Build();

        var group = ChannelGroups.Find(model.Graph).Single(g => g.Seed.Name == "conv");
        Assert.Contains("'transpose' (Transpose) reads its channels", group.Refusal);
    }

    /// <summary>
    /// The consumers' refit fits W'z + b' to Wz + C; a Gemm reader computing αWz + βC with α ≠ β would get a bias off by
    /// (β − α)(b' − C), so such a reader leaves the group whole.
    /// </summary>
    [Theory]
    [InlineData(2f, 1f)]
    [InlineData(1f, 0.5f)]
    public void A_gemm_reader_with_alpha_or_beta_leaves_the_group_whole(float alpha, float beta)
    {
        var random = new Random(6);
        var model = new GraphBuilder("gemm")
            .Input("x", DataType.Float, "N", 6)
            .Initializer("w1", Values(random, 8 * 6), 8, 6).Initializer("b1", Values(random, 8), 8)
            .Initializer("w2", Values(random, 4 * 8), 4, 8).Initializer("b2", Values(random, 4), 4)
            .Node("Gemm", ["x", "w1", "b1"], ["h"], "fc1", "", OnnxAttribute.Int("transB", 1))
            .Node("Relu", ["h"], ["r"], "relu")
            .Node("Gemm", ["r", "w2", "b2"], ["y"], "fc2", "", OnnxAttribute.Int("transB", 1), OnnxAttribute.Float("alpha", alpha), OnnxAttribute.Float("beta", beta))
            .Output("y", DataType.Float, "N", 4)
            .Build();

        var group = ChannelGroups.Find(model.Graph).Single(g => g.Seed.Name == "fc1");
        Assert.Equal("'fc2' is a Gemm with alpha or beta other than 1, which the least-squares refit of its weight does not model", group.Refusal);
    }

    /// <summary>Removes all but <paramref name="keep"/> and compares with the original whose consumer columns of the removed channels are zero.</summary>
    internal static void AssertPrunedMatchesMasked(OnnxModel model, ChannelGroup group, long[] keep, (string Weight, int Axis, long Stride)[] consumers, params string[] shrunk)
    {
        var original = Clone(model);
        var removed = ChannelSurgery.RemovedChannels(group.Channels, keep);
        foreach (var (weight, axis, stride) in consumers)
        {
            Mask(original, weight, axis, removed, stride);
        }

        ChannelSurgery.Remove(model, group, keep);
        foreach (var producer in group.Slices.Where(s => s.Role == SliceRole.Producer))
        {
            Assert.Equal(keep.Length, Dims(model, producer.Initializer)[producer.Axis]);
        }

        foreach (var name in shrunk)
        {
            Assert.Contains((long)keep.Length, Dims(model, name));
        }

        AssertSameOutputs(original, model);
    }

    internal static void Mask(OnnxModel model, string weight, int axis, long[] channels, long stride)
    {
        var tensor = model.Graph.GetInitializer(weight)!;
        var values = model.ToTorch(tensor);
        foreach (var c in channels)
        {
            values.narrow(axis, c * stride, stride).zero_();
        }

        model.ReplaceData(tensor, values.ToOnnx(weight));
    }

    internal static void AssertSameOutputs(OnnxModel expected, OnnxModel actual)
    {
        var input = expected.Graph.Proto.Input[0];
        var dims = input.Type.TensorType.Shape.Dim.Select(d => d.HasDimValue ? d.DimValue : Batch).ToArray();
        var values = Values(new Random(9), (int)dims.Aggregate(1L, (a, b) => a * b));
        var a = Run(expected, input.Name, values, dims);
        var b = Run(actual, input.Name, values, dims);
        Assert.Equal(a.Count, b.Count);
        for (var i = 0; i < a.Count; i++)
        {
            Assert.Equal(a[i].Length, b[i].Length);
            var scale = a[i].Max(Math.Abs);
            var worst = a[i].Zip(b[i], (p, q) => Math.Abs(p - q)).Max();
            Assert.True(worst <= 1e-5f * Math.Max(1, scale), $"output {i}: largest difference {worst} (scale {scale})");
        }
    }

    internal static List<float[]> Run(OnnxModel model, string input, float[] values, long[] dims)
    {
        using var options = new SessionOptions { IntraOpNumThreads = 1, GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL };
        using var session = new InferenceSession(model.Proto.ToByteArray(), options);
        using var feed = OrtValue.CreateTensorValueFromMemory(values, dims);
        using var results = session.Run(new RunOptions(), [input], [feed], session.OutputNames.ToArray());
        return results.Select(r => r.GetTensorDataAsSpan<float>().ToArray()).ToList();
    }

    internal static OnnxModel Clone(OnnxModel model) => new(model.Proto.Clone());

    internal static long[] Dims(OnnxModel model, string name) => model.Graph.GetInitializer(name)!.Dims.ToArray();

    private static AttributeProto Pads(long p) => OnnxAttribute.Ints("pads", p, p, p, p);

    internal static float[] Values(Random random, int count) => Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
}
