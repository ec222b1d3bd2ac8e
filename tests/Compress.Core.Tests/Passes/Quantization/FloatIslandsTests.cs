using Compress.Core.Calibration;
using Compress.Core.Data;
using Compress.Core.Evaluation;
using Compress.Core.Onnx;
using Compress.Core.Passes.Quantization;
using Compress.Core.Tests.TestSupport;
using Compress.Core.Torch;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Core.Tests.Passes.Quantization;

/// <summary>
/// The float-island finder on graphs written out op by op (a decomposed LayerNorm, a tanh GELU, a MatMul bias Add),
/// as exporters without fused ops write them, and on the project's CNN and MLP, which have none.
/// </summary>
public sealed class FloatIslandsTests : TempDirectoryTest
{
    [Fact]
    public void A_decomposed_layernorm_a_tanh_gelu_and_a_matmul_bias_are_found()
    {
        var islands = FloatIslands.Find(Block().Graph);

        var norm = Assert.Single(islands.Islands, i => i.Kind == IslandKind.LayerNorm);
        Assert.Equal(["ReduceMean", "Sub", "Sqrt", "Add", "ReduceMean", "Pow", "Div", "Mul", "Add"], norm.Nodes.Select(n => n.OpType));
        Assert.Equal(("normed", "gamma", "beta"), (norm.Output, norm.Gamma, norm.Beta));
        var gelu = Assert.Single(islands.Islands, i => i.Kind == IslandKind.Gelu);
        Assert.Equal(["tanh", "inner", "cubic_sum", "cubic_scale", "cube", "one_plus", "half", "gelu"], gelu.Nodes.Select(n => n.Name));
        Assert.Equal("activated", gelu.Output);
        Assert.Equal("bias", Assert.Single(islands.Islands, i => i.Kind == IslandKind.MatMulBias).Nodes.Single().Name);
        Assert.DoesNotContain(islands.Islands, i => i.Kind == IslandKind.Softmax);
        Assert.False(islands.Contains(Block().Graph.Nodes.First(n => n.OpType == "MatMul")));
    }

    [Theory]
    [InlineData("mlp")]
    [InlineData("cnn")]
    public void Cnn_and_mlp_have_no_islands(string model)
    {
        var graph = OnnxModel.Load(model == "mlp" ? FashionData.MlpModel : FashionData.CnnModel).Graph;
        Assert.Empty(FloatIslands.Find(graph).Islands);
    }

    [Fact]
    public void Smoothing_a_decomposed_layernorm_rescales_its_affine_constants_and_keeps_the_output()
    {
        TorchRuntime.EnsureLoaded();
        var model = Block();
        var path = Path.Combine(Dir, "x.npz");
        var random = new Random(3);
        var x = Enumerable.Range(0, 16 * 5 * 8).Select(i => (float)(random.NextDouble() * 2 - 1) * (i % 8 == 2 ? 20 : 1)).ToArray();
        ArrayFile.Write(path, NpyArray.Create("x", x, 16, 5, 8));
        var data = CalibrationSet.Load(path, model, null, null, 0);
        var before = Run(model, data);

        var notes = ActivationSmoothing.Apply(model, FloatIslands.Find(model.Graph), data, 0.5);

        Assert.StartsWith("smoothing (α 0.5): 1 LayerNorm outputs", Assert.Single(notes));
        Assert.Contains("into 1 MatMul/Gemm weights", notes[0]);
        Assert.DoesNotContain("other readers", notes[0]);
        using var gamma = model.OpenTensorData(model.Graph.GetInitializer("gamma")!);
        Assert.NotEqual(1f, gamma.As<float>()[2]);
        var after = Run(model, data);
        Assert.True(before.Zip(after).Max(p => Math.Abs(p.First - p.Second)) <= 1e-4);
    }

    private static float[] Run(OnnxModel model, CalibrationSet data)
    {
        var values = new List<float>();
        using var runner = new OrtModelRunner(model);
        runner.Run(data, 16, (_, _, outputs) => values.AddRange(outputs["y"].GetTensorDataAsSpan<float>().ToArray()));
        return [.. values];
    }

    /// <summary>x [N, T, 8] → LayerNorm written out → MatMul 8→16 + bias → tanh GELU → MatMul 16→8 → y.</summary>
    private static OnnxModel Block()
    {
        var random = new Random(1);
        float[] Values(int n, double scale) => Enumerable.Range(0, n).Select(_ => (float)((random.NextDouble() * 2 - 1) * scale)).ToArray();
        var axes = OnnxAttribute.Ints("axes", -1);
        return new GraphBuilder("block")
            .Opset("", 17)
            .Input("x", DataType.Float, "N", "T", 8)
            .Initializer("two", [2f])
            .Initializer("eps", [1e-5f])
            .Initializer("gamma", Enumerable.Repeat(1f, 8).ToArray(), 8)
            .Initializer("beta", Values(8, 0.1), 8)
            .Initializer("W1", Values(8 * 16, 0.3), 8, 16)
            .Initializer("b1", Values(16, 0.1), 16)
            .Initializer("three", [3f])
            .Initializer("c1", [0.044715f])
            .Initializer("c2", [0.7978846f])
            .Initializer("one", [1f])
            .Initializer("c_half", [0.5f])
            .Initializer("W2", Values(16 * 8, 0.3), 16, 8)
            .Node("ReduceMean", ["x"], ["mean"], "mean", attributes: axes)
            .Node("Sub", ["x", "mean"], ["centred"], "centre")
            .Node("Pow", ["centred", "two"], ["squared"], "square")
            .Node("ReduceMean", ["squared"], ["variance"], "variance", attributes: axes)
            .Node("Add", ["variance", "eps"], ["variance_eps"], "epsilon")
            .Node("Sqrt", ["variance_eps"], ["std"], "std")
            .Node("Div", ["centred", "std"], ["normalized"], "normalize")
            .Node("Mul", ["normalized", "gamma"], ["scaled"], "scale")
            .Node("Add", ["scaled", "beta"], ["normed"], "shift")
            .Node("MatMul", ["normed", "W1"], ["projected"], "project")
            .Node("Add", ["projected", "b1"], ["h"], "bias")
            .Node("Pow", ["h", "three"], ["h3"], "cube")
            .Node("Mul", ["h3", "c1"], ["h3c"], "cubic_scale")
            .Node("Add", ["h", "h3c"], ["sum"], "cubic_sum")
            .Node("Mul", ["sum", "c2"], ["inner_out"], "inner")
            .Node("Tanh", ["inner_out"], ["t"], "tanh")
            .Node("Add", ["t", "one"], ["t1"], "one_plus")
            .Node("Mul", ["h", "c_half"], ["h_half"], "half")
            .Node("Mul", ["h_half", "t1"], ["activated"], "gelu")
            .Node("MatMul", ["activated", "W2"], ["y"], "down")
            .Output("y", DataType.Float, "N", "T", 8)
            .Build();
    }
}
