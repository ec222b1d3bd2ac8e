using Compress.Core.Onnx;
using Compress.Core.Torch;
using TorchSharp;

namespace Compress.Core.Tests.Torch;

public sealed class TorchRuntimeTests
{
    [Fact]
    public void Torch_loads_and_multiplies_matrices()
    {
        TorchRuntime.EnsureLoaded();
        using var a = torch.tensor(new float[] { 1, 2, 3, 4, 5, 6 }, [2, 3]);
        using var b = torch.tensor(new float[] { 7, 8, 9, 10, 11, 12 }, [3, 2]);
        using var c = torch.matmul(a, b);
        Assert.Equal(new long[] { 2, 2 }, c.shape);
        Assert.Equal(new float[] { 58, 64, 139, 154 }, c.data<float>().ToArray());
        Assert.NotNull(TorchRuntime.LoadedFrom);
    }

    [Fact]
    public void Initializers_convert_to_torch_and_back_unchanged()
    {
        var values = Enumerable.Range(0, 12).Select(i => i * 0.25f - 1).ToArray();
        var model = new GraphBuilder("g").Initializer("w", values, 3, 4)
            .Input("x", Compress.Core.Onnx.Proto.TensorProto.Types.DataType.Float, 1, 3)
            .Node("MatMul", ["x", "w"], ["y"]).Output("y", Compress.Core.Onnx.Proto.TensorProto.Types.DataType.Float, 1, 4).Build();
        using var tensor = model.ToTorch(model.Graph.GetInitializer("w")!);
        Assert.Equal(new long[] { 3, 4 }, tensor.shape);
        Assert.Equal(values, tensor.data<float>().ToArray());
        var back = tensor.ToOnnx("w");
        Assert.Equal(model.Graph.GetInitializer("w"), back);
    }
}
