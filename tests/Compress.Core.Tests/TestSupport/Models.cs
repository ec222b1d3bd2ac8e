using Compress.Core.Onnx;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Core.Tests.TestSupport;

/// <summary>Small models made with the project's own graph builder.</summary>
public static class Models
{
    /// <summary>y = relu(x·W + b) with a [64, 32] weight (8 KiB, large enough to go to external data).</summary>
    public static OnnxModel Dense(int seed = 0)
    {
        var random = new Random(seed);
        var w = Enumerable.Range(0, 64 * 32).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray();
        var b = Enumerable.Range(0, 32).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray();
        return new GraphBuilder("dense")
            .Input("x", DataType.Float, "batch", 64)
            .Initializer("W", w, 64, 32)
            .Initializer("b", b, 32)
            .Node("MatMul", ["x", "W"], ["xw"], "matmul")
            .Node("Add", ["xw", "b"], ["z"], "add")
            .Node("Relu", ["z"], ["y"], "relu")
            .Output("y", DataType.Float, "batch", 32)
            .Build();
    }

    public static float[] RandomInput(int count, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
    }
}
