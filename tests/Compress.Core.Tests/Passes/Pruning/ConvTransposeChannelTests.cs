using Compress.Core.Calibration;
using Compress.Core.Data;
using Compress.Core.Evaluation;
using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Passes;
using Compress.Core.Passes.Pruning.Channels;
using Compress.Core.Passes.SecondOrder;
using Compress.Core.Torch;
using Compress.Spec;
using Xunit.Abstractions;
using static TorchSharp.torch;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Core.Tests.Passes.Pruning;

/// <summary>
/// ConvTranspose in channel groups (algorithms.md §14), on a segmentation head as PP-OCRv4 det ends:
/// Conv → Relu → ConvTranspose (2×2, stride 2) → BatchNormalization → Relu → ConvTranspose (3×3, stride 2, pads 1,
/// output_padding 1). The first ConvTranspose reads the Conv's group (its weight's axis 0) and writes a group of its
/// own (axis 1 and its bias) that the second reads.
/// </summary>
public sealed class ConvTransposeChannelTests(ITestOutputHelper output)
{
    [Fact]
    public void A_conv_transpose_reads_one_group_and_writes_the_next_and_the_pruned_graph_matches_the_masked_one()
    {
        var model = Head(new Random(11));
        var groups = ChannelGroups.Find(model.Graph);
        var conv = Assert.Single(groups, g => g.Seed.Name == "conv");
        Assert.Null(conv.Refusal);
        Assert.Contains(conv.Consumers, s => s.Initializer == "wt1" && s.Axis == 0);
        var up1 = Assert.Single(groups, g => g.Seed.Name == "up1");
        Assert.Null(up1.Refusal);
        Assert.Contains(up1.Slices, s => s.Initializer == "wt1" && s.Axis == 1 && s.Role == SliceRole.Producer);
        Assert.Contains(up1.Consumers, s => s.Initializer == "wt2" && s.Axis == 0);
        Assert.Contains("graph output", Assert.Single(groups, g => g.Seed.Name == "up2").Refusal);

        ChannelGroupTests.AssertPrunedMatchesMasked(model, conv, [0, 2, 3, 5, 8, 9, 12, 15], [("wt1", 0, 1)], "b");
        var again = ChannelGroups.Find(model.Graph).Single(g => g.Seed.Name == "up1");
        ChannelGroupTests.AssertPrunedMatchesMasked(model, again, [1, 4, 6], [("wt2", 0, 1)], "bt1", "gamma", "var");
        Assert.Equal([8L, 3, 2, 2], ChannelGroupTests.Dims(model, "wt1"));
        Assert.Equal([3L, 2, 3, 3], ChannelGroupTests.Dims(model, "wt2"));
    }

    [Theory]
    [InlineData("grouped", "'up1' is a grouped ConvTranspose (group 2): its input channels are not cut")]
    [InlineData("output_shape", "'up1' sets its output size by output_shape or auto_pad SAME_*, whose padding the refit does not follow")]
    [InlineData("SAME_UPPER", "'up1' sets its output size by output_shape or auto_pad SAME_*, whose padding the refit does not follow")]
    [InlineData("SAME_LOWER", "'up1' sets its output size by output_shape or auto_pad SAME_*, whose padding the refit does not follow")]
    public void A_conv_transpose_the_engine_does_not_follow_leaves_the_group_it_reads_whole(string form, string reason)
    {
        var model = Head(new Random(12), form);
        Assert.Equal(reason, ChannelGroups.Find(model.Graph).Single(g => g.Seed.Name == "conv").Refusal);
    }

    /// <summary>
    /// The refit reads a ConvTranspose as the Conv it equals (<see cref="ConvTransposeGeometry"/>): its rows times its
    /// matrix plus the bias give ONNX Runtime's output exactly, for strides equal to and below the kernel, pads that pad
    /// and pads that crop, asymmetric pads, output_padding, dilations, VALID and 1-D.
    /// </summary>
    [Theory]
    [InlineData("2x2 stride 2", 2, 2, 0, 0, 0, 0, 0, 1, false, false)]
    [InlineData("3x3 stride 2 pads 1 output_padding 1", 3, 2, 1, 1, 1, 1, 1, 1, false, false)]
    [InlineData("3x3 stride 1 pads 1", 3, 1, 1, 1, 1, 1, 0, 1, false, false)]
    [InlineData("3x3 stride 2 dilation 2 asymmetric pads", 3, 2, 2, 0, 1, 3, 0, 2, false, false)]
    [InlineData("2x2 stride 3 pads that crop", 2, 3, 2, 1, 2, 2, 0, 1, false, false)]
    [InlineData("2x2 stride 2 VALID", 2, 2, 0, 0, 0, 0, 0, 1, true, false)]
    [InlineData("1-D 3 stride 2 pads 1 output_padding 1", 3, 2, 1, 1, 1, 1, 1, 1, false, true)]
    public void The_equivalent_conv_rows_give_the_conv_transpose_output_exactly(string form, long kernel, long stride, long top, long left, long bottom, long right,
        long outputPadding, long dilation, bool valid, bool oneD)
    {
        _ = form;
        TorchRuntime.EnsureLoaded();
        var random = new Random(13);
        long[] spatial = oneD ? [7] : [5, 4];
        long[] kernelShape = oneD ? [kernel] : [kernel, kernel];
        var attributes = new List<AttributeProto>
        {
            OnnxAttribute.Ints("strides", [.. spatial.Select(_ => stride)]),
            OnnxAttribute.Ints("dilations", [.. spatial.Select(_ => dilation)]),
            OnnxAttribute.Ints("output_padding", [.. spatial.Select(_ => outputPadding)]),
        };
        attributes.Add(valid ? OnnxAttribute.String("auto_pad", "VALID") : OnnxAttribute.Ints("pads", oneD ? [left, right] : [top, left, bottom, right]));
        var weights = ChannelGroupTests.Values(random, (int)(3 * 4 * kernelShape.Aggregate(1L, (a, b) => a * b)));
        var model = new GraphBuilder("transposed")
            .Input("x", DataType.Float, [2L, 3L, .. spatial.Select(d => (object)d)])
            .Initializer("w", weights, [3, 4, .. kernelShape])
            .Initializer("b", ChannelGroupTests.Values(random, 4), 4)
            .Node("ConvTranspose", ["x", "w", "b"], ["y"], "up", "", [.. attributes])
            .Output("y", DataType.Float, oneD ? ["N", "C", "L"] : ["N", "C", "H", "W"])
            .Build();
        long[] dims = [2, 3, .. spatial];
        var x = ChannelGroupTests.Values(random, (int)dims.Aggregate(1L, (a, b) => a * b));
        var expected = ChannelGroupTests.Run(model, "x", x, dims)[0];

        using var scope = NewDisposeScope();
        var node = model.Graph.Nodes.Single();
        var weight = model.Graph.GetInitializer("w")!;
        var geometry = ConvTransposeGeometry.Of(node, weight);
        var w = model.ToTorch(weight);
        var matrix = geometry.ToMatrix(w);
        Assert.True(geometry.FromMatrix(matrix).eq(w).all().item<bool>());
        var rows = geometry.Rows(tensor(x).reshape(dims));
        var y = rows.mm(matrix.t()).add(model.ToTorch(model.Graph.GetInitializer("b")!)); // [N·L, C_out]
        var actual = y.reshape(2, -1, 4).permute(0, 2, 1).contiguous().data<float>().ToArray();
        Assert.Equal(expected.Length, actual.Length);
        var worst = expected.Zip(actual, (p, q) => Math.Abs(p - q)).Max();
        Assert.True(worst <= 1e-5f, $"largest difference {worst}");
    }

    /// <summary>
    /// The Conv's group is cut in half by <c>obs</c> with the ConvTranspose reading it refitted by least squares: its
    /// output error on held-out inputs is well below that of the same channels cut with no refit (the consumer's rows of
    /// them zeroed). The Conv's second eight filters are twice the first eight, so what a removed channel carried is in a
    /// kept one, and an exact refit of the ConvTranspose gets most of it back.
    /// </summary>
    [Fact]
    public void Refitting_the_conv_transpose_after_the_cut_lowers_the_output_error()
    {
        TorchRuntime.EnsureLoaded();
        var model = Head(new Random(14), duplicated: true);
        var original = ChannelGroupTests.Clone(model);
        var step = new PruneStep { Method = "obs", Channel = true, Scope = "layer", Sparsity = 0.5 };
        step.OpTypes.AddRange(["Conv", "Gemm", "MatMul"]);
        step.Include.Add("conv");
        var spec = new CompressionSpec();
        spec.Steps.Add(step);
        var calibration = Inputs(new Random(15), 32);
        var context = new CompressionContext(model, spec, _ => calibration);
        new ChannelPruner(step).Apply(context);
        Assert.Equal([8L, 3, 3, 3], ChannelGroupTests.Dims(model, "w"));
        Assert.Equal([8L, 8, 2, 2], ChannelGroupTests.Dims(model, "wt1"));

        // The channels kept: the pruned Conv's filters found among the original's (the Conv itself is not refitted).
        var before = original.ToTorch(original.Graph.GetInitializer("w")!).reshape(16, -1);
        var after = model.ToTorch(model.Graph.GetInitializer("w")!).reshape(8, -1);
        var kept = new List<long>();
        for (var i = 0; i < 8; i++)
        {
            kept.Add(Enumerable.Range(0, 16).Select(c => (long)c).First(c => !kept.Contains(c) && before[c].eq(after[i]).all().item<bool>()));
        }

        var masked = ChannelGroupTests.Clone(original);
        ChannelGroupTests.Mask(masked, "wt1", 0, ChannelSurgery.RemovedChannels(16, kept), 1);
        var held = Inputs(new Random(16), 16).Inputs["x"];
        var target = Outputs(original, held);
        var refitted = Error(Outputs(model, held), target);
        var unfitted = Error(Outputs(masked, held), target);
        output.WriteLine($"mean squared output error: refitted {refitted:G4}, no refit {unfitted:G4}");
        Assert.True(refitted < 0.5 * unfitted, $"output error {refitted:G4} refitted against {unfitted:G4} with no refit");
    }

    [Fact]
    public void Multiply_adds_count_each_conv_transpose_input_element_times_its_outputs_per_input()
    {
        var model = Head(new Random(17));
        var counts = FlopCount.PerNode(model, Inputs(new Random(18), 2));
        Assert.Equal(16 * 3 * 9 * 36, counts["a0"]);
        Assert.Equal(16 * 36 * 8 * 4, counts["u0"]); // 16 channels of 6×6, each into 8 channels × 2×2
        Assert.Equal(8 * 144 * 2 * 9, counts["y"]); // 8 channels of 12×12, each into 2 channels × 3×3
    }

    /// <summary>
    /// x [N, 3, 6, 6] → conv (16, 3×3, pads 1) → Relu → up1 (ConvTranspose 16 → 8, 2×2, stride 2, bias) → BN → Relu →
    /// up2 (ConvTranspose 8 → 2, 3×3, stride 2, pads 1, output_padding 1) → y [N, 2, 24, 24]; <paramref name="form"/>
    /// "grouped" makes up1 group 2, "output_shape" gives it output_shape [12, 12], "SAME_UPPER" or "SAME_LOWER" that
    /// auto_pad.
    /// </summary>
    private static OnnxModel Head(Random random, string form = "", bool duplicated = false)
    {
        var half = ChannelGroupTests.Values(random, 8 * 3 * 9);
        var halfBias = ChannelGroupTests.Values(random, 8);
        // Twice the first eight, not the same: Relu(2a) = 2·Relu(a) carries the same information, and each kept filter
        // is found among the original's without ambiguity.
        var w = duplicated ? [.. half, .. half.Select(v => 2 * v)] : ChannelGroupTests.Values(random, 16 * 3 * 9);
        var b = duplicated ? [.. halfBias, .. halfBias.Select(v => 2 * v)] : ChannelGroupTests.Values(random, 16);
        var up1 = new List<AttributeProto> { OnnxAttribute.Ints("strides", 2, 2) };
        var group = form == "grouped" ? 2 : 1;
        if (form == "grouped")
        {
            up1.Add(OnnxAttribute.Int("group", 2));
        }
        else if (form == "output_shape")
        {
            up1.Add(OnnxAttribute.Ints("output_shape", 12, 12));
        }
        else if (form.StartsWith("SAME_", StringComparison.Ordinal))
        {
            up1.Add(OnnxAttribute.String("auto_pad", form));
        }

        return new GraphBuilder("head")
            .Input("x", DataType.Float, "N", 3, 6, 6)
            .Initializer("w", w, 16, 3, 3, 3).Initializer("b", b, 16)
            .Initializer("wt1", ChannelGroupTests.Values(random, 16 * 8 / group * 4), 16, 8 / group, 2, 2).Initializer("bt1", ChannelGroupTests.Values(random, 8), 8)
            .Initializer("gamma", ChannelGroupTests.Values(random, 8), 8).Initializer("beta", ChannelGroupTests.Values(random, 8), 8)
            .Initializer("mean", ChannelGroupTests.Values(random, 8), 8).Initializer("var", ChannelGroupTests.Values(random, 8).Select(v => v + 1.5f).ToArray(), 8)
            .Initializer("wt2", ChannelGroupTests.Values(random, 8 * 2 * 9), 8, 2, 3, 3)
            .Node("Conv", ["x", "w", "b"], ["a0"], "conv", "", OnnxAttribute.Ints("pads", 1, 1, 1, 1))
            .Node("Relu", ["a0"], ["a"], "relu")
            .Node("ConvTranspose", ["a", "wt1", "bt1"], ["u0"], "up1", "", [.. up1])
            .Node("BatchNormalization", ["u0", "gamma", "beta", "mean", "var"], ["n"], "bn")
            .Node("Relu", ["n"], ["r"], "relu1")
            .Node("ConvTranspose", ["r", "wt2"], ["y"], "up2", "", OnnxAttribute.Ints("strides", 2, 2), OnnxAttribute.Ints("pads", 1, 1, 1, 1),
                OnnxAttribute.Ints("output_padding", 1, 1))
            .Output("y", DataType.Float, "N", 2, 24, 24)
            .Build();
    }

    private static CalibrationSet Inputs(Random random, int samples)
    {
        long[] shape = [samples, 3, 6, 6];
        var values = ChannelGroupTests.Values(random, samples * 3 * 36);
        return CalibrationSet.Synthesized(new Dictionary<string, NpyArray> { ["x"] = NpyArray.Create("x", values, shape) }, samples, "seeded uniform inputs");
    }

    private static float[] Outputs(OnnxModel model, NpyArray x) =>
        ChannelGroupTests.Run(model, "x", x.As<float>().ToArray(), x.Shape)[0];

    private static double Error(float[] actual, float[] expected) => actual.Zip(expected, (a, e) => (double)(a - e) * (a - e)).Sum() / expected.Length;
}
