using Compress.Core.Calibration;
using Compress.Core.Data;
using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Passes;
using Compress.Core.Passes.Factorization;
using Compress.Core.Torch;
using Compress.Spec;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using static TorchSharp.torch;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Core.Tests.Passes.Factorization;

/// <summary>
/// <c>factorize</c> on Conv (algorithms.md §16): a group-1 k×k Conv becomes a k×k Conv to rank r (the original strides,
/// pads and dilations) and a 1×1 Conv with the bias, from the SVD of W [C_out, C_in·kh·kw] whitened by the im2col
/// patches' second moment. Small graphs from the graph builder on seeded random inputs, run in ONNX Runtime.
/// </summary>
public sealed class ConvFactorizationTests
{
    private const int Samples = 48;

    [Fact]
    public void At_full_rank_the_two_convs_match_the_original_with_its_strides_pads_dilations_and_bias()
    {
        var model = Model(Weight(new Random(1), 16, 3, 3, 3, rank: 16, tail: 0), group: 1);
        var original = Clone(model);
        var context = Context(model, 1.0);
        TorchRuntime.EnsureLoaded();
        var use = WeightSelection.Select(model.Graph, context.Spec.Steps[0]).Single();
        using (NewDisposeScope())
        {
            var svd = WhitenedSvd.Of(context, use);
            var (a, b, error) = svd.Truncate(16); // min(16, 3·3·3)
            Assert.True(error < 1e-10, $"relative error {error}");
            LowRankFactorizer.Replace(context, use, a, b, error, "");
        }

        var first = model.Graph.Nodes.Single(n => n.Name == "conv_a");
        var second = model.Graph.Nodes.Single(n => n.Name == "conv");
        Assert.Equal([16L, 3, 3, 3], Dims(model, first.Input[1]));
        Assert.Equal([2L, 1], first.Ints("strides")!);
        Assert.Equal([1L, 0, 2, 1], first.Ints("pads")!);
        Assert.Equal([1L, 2], first.Ints("dilations")!);
        Assert.Equal([16L, 16, 1, 1], Dims(model, second.Input[1]));
        Assert.Equal("bias", second.Input[2]);
        Assert.Equal([1L, 1], second.Ints("kernel_shape")!);
        Assert.Null(model.Graph.GetInitializer("w"));
        AssertClose(original, model, 1e-5f);
    }

    [Fact]
    public void The_rank_follows_the_energy_option_and_a_rank_that_saves_too_little_leaves_the_layer()
    {
        // W: 8 strong directions, 8 weak (a tenth), a faint rest; C_out 32, C_in·kh·kw 72: up to rank 16 saves a quarter.
        var weight = Weight(new Random(2), 32, 8, 3, 3, rank: 8, tail: 8);
        var (coarse, coarseNotes) = Factorize(Model(weight, group: 1), 0.95);
        var (fine, fineNotes) = Factorize(Model(weight, group: 1), 0.999);
        var (exact, exactNotes) = Factorize(Model(weight, group: 1), 0.999999);
        Assert.Equal([8L, 8, 3, 3], Dims(coarse, "w_lowrank_a"));
        Assert.Equal([32L, 8, 1, 1], Dims(coarse, "w_lowrank_b"));
        Assert.Equal([16L, 8, 3, 3], Dims(fine, "w_lowrank_a"));
        Assert.Contains(coarseNotes, n => n.Contains("factorize/svd: conv 32×8×3×3 → rank 8 (", StringComparison.Ordinal) && n.Contains("per output position", StringComparison.Ordinal));
        Assert.Contains(fineNotes, n => n.Contains("→ rank 16 (", StringComparison.Ordinal));
        Assert.NotNull(exact.Graph.GetInitializer("w"));
        Assert.Contains(exactNotes, n => n.Contains("left as they were: conv (rank ", StringComparison.Ordinal) && n.Contains("of its multiply-adds per output position", StringComparison.Ordinal));

        // Rank 16 holds the strong and weak directions: the output moves by little more than the faint rest.
        AssertClose(Model(weight, group: 1), fine, 2e-2f);
    }

    [Fact]
    public void The_same_inputs_give_the_same_bytes()
    {
        var weight = Weight(new Random(3), 32, 8, 3, 3, rank: 8, tail: 8);
        var (one, _) = Factorize(Model(weight, group: 1), 0.999);
        var (two, _) = Factorize(Model(weight, group: 1), 0.999);
        Assert.NotNull(one.Graph.GetInitializer("w_lowrank_a"));
        Assert.Equal(one.Proto.ToByteArray(), two.Proto.ToByteArray());
    }

    [Fact]
    public void At_full_rank_the_spatial_form_matches_the_original_with_the_vertical_window_first_and_the_horizontal_second()
    {
        var model = SameWidthModel(Weight(new Random(5), 8, 4, 3, 3, rank: 8, tail: 0));
        var original = Clone(model);
        var context = Context(model, 1.0);
        TorchRuntime.EnsureLoaded();
        var use = WeightSelection.Select(model.Graph, context.Spec.Steps[0]).Single();
        Assert.Null(LowRankForms.SpatialRefusal(use));
        using (NewDisposeScope())
        {
            var spatial = WhitenedSvd.Of(context, use).Spatial(use);
            Assert.Equal(12, spatial.MaxRank); // min(C_in·kh, C_out·kw)
            var (v, h, error, output) = spatial.Truncate(12);
            Assert.True(error < 1e-10 && output < 1e-10, $"relative error {error}, output error {output}");
            LowRankFactorizer.Replace(context, use, v, h, error, "", spatial: true);
        }

        var first = model.Graph.Nodes.Single(n => n.Name == "conv_a");
        var second = model.Graph.Nodes.Single(n => n.Name == "conv");
        Assert.Equal([12L, 4, 3, 1], Dims(model, first.Input[1]));
        Assert.Equal([3L, 1], first.Ints("kernel_shape")!);
        Assert.Equal([2L, 1], first.Ints("strides")!);
        Assert.Equal([1L, 0, 2, 0], first.Ints("pads")!);
        Assert.Equal([2L, 1], first.Ints("dilations")!);
        Assert.Equal([8L, 12, 1, 3], Dims(model, second.Input[1]));
        Assert.Equal([1L, 3], second.Ints("kernel_shape")!);
        Assert.Equal([0L, 1, 0, 1], second.Ints("pads")!);
        Assert.Equal([1L, 1], second.Ints("dilations")!);
        Assert.Equal("bias", second.Input[2]);
        AssertClose(original, model, 1e-5f);
    }

    [Fact]
    public void Each_layer_takes_the_form_with_fewer_multiply_adds_at_the_same_error()
    {
        // Separable: W[o, c, i, j] = Σ_k<8 H[o, k, j]·V[k, c, i]: spatial rank 8 (42% of the multiply-adds); the channel
        // form needs rank 24 of 32 (108%). Low channel rank (the other test's weight): the channel form, rank 8 (36%).
        var (separable, separableNotes) = Factorize(SameWidthModel(Separable(new Random(6), 32, 8, 3, 3, rank: 8)), 0.999);
        Assert.Equal([8L, 8, 3, 1], Dims(separable, "w_lowrank_a"));
        Assert.Equal([32L, 8, 1, 3], Dims(separable, "w_lowrank_b"));
        Assert.Contains(separableNotes, n => n.Contains("conv 32×8×3×3 → spatial (kh×1, 1×kw) rank 8 (42 %", StringComparison.Ordinal));
        AssertClose(SameWidthModel(Separable(new Random(6), 32, 8, 3, 3, rank: 8)), separable, 2e-2f);

        var (channel, channelNotes) = Factorize(SameWidthModel(Weight(new Random(2), 32, 8, 3, 3, rank: 8, tail: 0)), 0.999);
        Assert.Equal([8L, 8, 3, 3], Dims(channel, "w_lowrank_a"));
        Assert.Contains(channelNotes, n => n.Contains("conv 32×8×3×3 → rank 8 (", StringComparison.Ordinal));
    }

    [Fact]
    public void A_1d_conv_takes_the_channel_form_and_matches_at_full_rank()
    {
        // x [N, 4, 12] → Conv(w [8, 4, 3], bias; stride 2, pads 1, 1) → Relu → y [N, 8, 6]
        var (values, _) = Weight(new Random(8), 8, 4, 3, 1, rank: 8, tail: 0);
        var model = new GraphBuilder("conv1d")
            .Input("x", DataType.Float, "N", 4, 12)
            .Initializer("w", values, 8, 4, 3)
            .Initializer("bias", Enumerable.Range(0, 8).Select(i => 0.05f * i).ToArray(), 8)
            .Node("Conv", ["x", "w", "bias"], ["c"], "conv", "", OnnxAttribute.Ints("strides", 2), OnnxAttribute.Ints("pads", 1, 1))
            .Node("Relu", ["c"], ["y"], "relu")
            .Output("y", DataType.Float, "N", 8, 6)
            .Build();
        var original = Clone(model);
        var context = Context(model, 1.0);
        TorchRuntime.EnsureLoaded();
        var use = WeightSelection.Select(model.Graph, context.Spec.Steps[0]).Single();
        Assert.NotNull(LowRankForms.SpatialRefusal(use));
        using (NewDisposeScope())
        {
            var (a, b, error) = WhitenedSvd.Of(context, use).Truncate(8);
            LowRankFactorizer.Replace(context, use, a, b, error, "");
        }

        Assert.Equal([8L, 4, 3], Dims(model, "w_lowrank_a"));
        Assert.Equal([8L, 8, 1], Dims(model, "w_lowrank_b"));
        AssertClose(original, model, 1e-5f);
    }

    [Theory]
    [InlineData(2, "grouped Conv (group 2): left whole")]
    [InlineData(8, "depthwise Conv (group 8): left whole")]
    public void A_grouped_or_depthwise_conv_is_left_whole_with_a_note(int group, string note)
    {
        var weight = Weight(new Random(4), 32, 8 / group, 3, 3, rank: 8, tail: 8);
        var model = Model(weight, group);
        var before = model.Proto.ToByteArray();
        var (after, notes) = Factorize(model, 0.95);
        Assert.Equal(before, after.Proto.ToByteArray());
        Assert.Contains(notes, n => n.Contains($"left as they were: conv ({note})", StringComparison.Ordinal));
    }

    /// <summary>x [N, C_in, 10, 9] → Conv(w, bias; strides 2×1, pads 1,0,2,1, dilations 1×2: the horizontal axis shrinks, no spatial form) → Relu → y.</summary>
    private static OnnxModel Model((float[] Values, long[] Dims) weight, int group) =>
        Model(weight, group, [2, 1], [1, 0, 2, 1], [1, 2], [6, 6]);

    /// <summary>x [N, C_in, 10, 9] → Conv(w, bias; strides 2×1, pads 1,1,2,1, dilations 2×1: the horizontal axis keeps its size) → Relu → y.</summary>
    private static OnnxModel SameWidthModel((float[] Values, long[] Dims) weight) =>
        Model(weight, 1, [2, 1], [1, 1, 2, 1], [2, 1], [5, 9]);

    private static OnnxModel Model((float[] Values, long[] Dims) weight, int group, long[] strides, long[] pads, long[] dilations, long[] output)
    {
        var inputs = weight.Dims[1] * group;
        var outputs = weight.Dims[0];
        var bias = Enumerable.Range(0, (int)outputs).Select(i => 0.1f * (i % 5) - 0.2f).ToArray();
        return new GraphBuilder("conv")
            .Input("x", DataType.Float, "N", inputs, 10, 9)
            .Initializer("w", weight.Values, weight.Dims)
            .Initializer("bias", bias, outputs)
            .Node("Conv", ["x", "w", "bias"], ["c"], "conv", "",
                OnnxAttribute.Ints("kernel_shape", 3, 3), OnnxAttribute.Ints("strides", strides), OnnxAttribute.Ints("pads", pads),
                OnnxAttribute.Ints("dilations", dilations), OnnxAttribute.Int("group", group))
            .Node("Relu", ["c"], ["y"], "relu")
            .Output("y", DataType.Float, "N", outputs, output[0], output[1])
            .Build();
    }

    /// <summary>
    /// A weight [out, in, kh, kw] of <paramref name="rank"/> strong random directions, <paramref name="tail"/> at a
    /// tenth of their size, and a faint (±3e-3) full-rank rest.
    /// </summary>
    private static (float[] Values, long[] Dims) Weight(Random random, long outputs, long inputs, long kh, long kw, int rank, int tail)
    {
        var columns = inputs * kh * kw;
        var values = new double[outputs * columns];
        for (var k = 0; k < rank + tail; k++)
        {
            var scale = k < rank ? 1.0 : 0.1;
            var u = Gaussian(random, outputs);
            var v = Gaussian(random, columns);
            for (var o = 0; o < outputs; o++)
            {
                for (var c = 0; c < columns; c++)
                {
                    values[o * columns + c] += scale * u[o] * v[c] / Math.Sqrt(columns);
                }
            }
        }

        var result = values.Select(v => (float)(v + 3e-3 * (random.NextDouble() * 2 - 1))).ToArray();
        return (result, [outputs, inputs, kh, kw]);
    }

    /// <summary>A weight [out, in, kh, kw] = Σ_k H[out, k, j]·V[k, in, i] over <paramref name="rank"/> random pairs, and the faint rest.</summary>
    private static (float[] Values, long[] Dims) Separable(Random random, long outputs, long inputs, long kh, long kw, int rank)
    {
        var values = new double[outputs * inputs * kh * kw];
        for (var k = 0; k < rank; k++)
        {
            var h = Gaussian(random, outputs * kw);
            var v = Gaussian(random, inputs * kh);
            for (var o = 0; o < outputs; o++)
            {
                for (var c = 0; c < inputs; c++)
                {
                    for (var i = 0; i < kh; i++)
                    {
                        for (var j = 0; j < kw; j++)
                        {
                            values[((o * inputs + c) * kh + i) * kw + j] += h[o * kw + j] * v[c * kh + i] / Math.Sqrt(inputs * kh);
                        }
                    }
                }
            }
        }

        return (values.Select(v => (float)(v + 3e-3 * (random.NextDouble() * 2 - 1))).ToArray(), [outputs, inputs, kh, kw]);
    }

    private static double[] Gaussian(Random random, long count) =>
        Enumerable.Range(0, (int)count).Select(_ => Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble())).ToArray();

    private static (OnnxModel Model, List<string> Notes) Factorize(OnnxModel model, double energy)
    {
        var context = Context(model, energy);
        PassRegistry.Create(context.Spec.Steps[0]).Apply(context);
        return (model, context.Notes);
    }

    private static CompressionContext Context(OnnxModel model, double energy)
    {
        var step = new FactorizeStep { Energy = energy };
        step.OpTypes.AddRange(["Conv", "Gemm", "MatMul"]);
        var spec = new CompressionSpec();
        spec.Steps.Add(step);
        var shape = InputShape(model, Samples);
        var values = Uniform(new Random(7), shape);
        var data = CalibrationSet.Synthesized(new Dictionary<string, NpyArray> { ["x"] = NpyArray.Create("x", values, shape) }, Samples, "seeded uniform inputs");
        return new CompressionContext(model, spec, _ => data);
    }

    private static void AssertClose(OnnxModel expected, OnnxModel actual, float tolerance)
    {
        var shape = InputShape(expected, 3);
        var values = Uniform(new Random(9), shape);
        var a = Run(expected, values, shape);
        var b = Run(actual, values, shape);
        Assert.Equal(a.Length, b.Length);
        var scale = a.Max(Math.Abs);
        var worst = a.Zip(b, (p, q) => Math.Abs(p - q)).Max();
        Assert.True(worst <= tolerance * Math.Max(1, scale), $"largest difference {worst} (scale {scale})");
    }

    private static long[] InputShape(OnnxModel model, long batch) =>
        model.Graph.Proto.Input[0].Type.TensorType.Shape.Dim.Select(d => d.HasDimValue ? d.DimValue : batch).ToArray();

    private static float[] Run(OnnxModel model, float[] values, long[] shape)
    {
        using var options = new SessionOptions { IntraOpNumThreads = 1 };
        using var session = new InferenceSession(model.Proto.ToByteArray(), options);
        using var feed = OrtValue.CreateTensorValueFromMemory(values, shape);
        using var results = session.Run(new RunOptions(), ["x"], [feed], ["y"]);
        return results[0].GetTensorDataAsSpan<float>().ToArray();
    }

    private static float[] Uniform(Random random, long[] shape) =>
        Enumerable.Range(0, (int)shape.Aggregate(1L, (a, b) => a * b)).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();

    private static OnnxModel Clone(OnnxModel model) => new(model.Proto.Clone());

    private static long[] Dims(OnnxModel model, string name) => model.Graph.GetInitializer(name)!.Dims.ToArray();
}
