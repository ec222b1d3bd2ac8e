using Compress.Core.Onnx;
using Compress.Core.Passes.Graph;
using Compress.Core.Tests.TestSupport;
using Microsoft.ML.OnnxRuntime;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Core.Tests.Passes.Graph;

public sealed class BatchNormFoldingTests : TempDirectoryTest
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Conv_then_batchnorm_folds_into_one_conv_with_the_same_outputs(bool convHasBias)
    {
        OnnxModel Build()
        {
            var random = new Random(3);
            float[] Values(int n, double scale, double offset = 0) => Enumerable.Range(0, n).Select(_ => (float)(offset + (random.NextDouble() - 0.5) * scale)).ToArray();
            var builder = new GraphBuilder("convbn")
                .Input("x", DataType.Float, "n", 2, 6, 6)
                .Initializer("w", Values(4 * 2 * 9, 1), 4, 2, 3, 3)
                .Initializer("gamma", Values(4, 1, 1), 4).Initializer("beta", Values(4, 1), 4)
                .Initializer("mean", Values(4, 1), 4).Initializer("var", Values(4, 0.5, 0.5), 4);
            if (convHasBias)
            {
                builder.Initializer("b", Values(4, 1), 4);
            }

            return builder
                .Node("Conv", convHasBias ? ["x", "w", "b"] : ["x", "w"], ["c"], "conv", "", OnnxAttribute.Ints("pads", 1, 1, 1, 1))
                .Node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["y"], "bn", "", OnnxAttribute.Float("epsilon", 1e-3f))
                .Output("y", DataType.Float, "n", 4, 6, 6)
                .Build();
        }

        var folded = Build();
        Assert.Equal(1, BatchNormFolding.Apply(folded));
        Assert.Equal(["Conv"], folded.Graph.Nodes.Select(n => n.OpType));
        Assert.Equal("y", folded.Graph.Nodes[0].Output[0]);
        Assert.Equal(2, folded.Graph.Proto.Initializer.Count); // w and the (new) bias; BN parameters removed

        var original = Path.Combine(Dir, "original.onnx");
        var result = Path.Combine(Dir, "folded.onnx");
        Build().Save(original);
        folded.Save(result);
        var input = Models.RandomInput(3 * 2 * 36, 9);
        float[] Run(string path)
        {
            using var session = new InferenceSession(path);
            using var x = OrtValue.CreateTensorValueFromMemory(input, [3, 2, 6, 6]);
            using var outputs = session.Run(new RunOptions(), ["x"], [x], ["y"]);
            return outputs[0].GetTensorDataAsSpan<float>().ToArray();
        }

        var expected = Run(original);
        var actual = Run(result);
        for (var i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-4 * (1 + Math.Abs(expected[i])), $"{i}: {expected[i]} vs {actual[i]}");
        }
    }

    [Fact]
    public void A_conv_output_read_elsewhere_is_not_folded()
    {
        var model = new GraphBuilder("shared")
            .Input("x", DataType.Float, 1, 1, 4, 4)
            .Initializer("w", new float[9], 1, 1, 3, 3)
            .Initializer("g", new[] { 1f }, 1).Initializer("b", new[] { 0f }, 1).Initializer("m", new[] { 0f }, 1).Initializer("v", new[] { 1f }, 1)
            .Node("Conv", ["x", "w"], ["c"], "conv")
            .Node("BatchNormalization", ["c", "g", "b", "m", "v"], ["y"], "bn")
            .Node("Relu", ["c"], ["r"], "relu")
            .Output("y", DataType.Float, 1, 1, 2, 2).Output("r", DataType.Float, 1, 1, 2, 2)
            .Build();
        Assert.Equal(0, BatchNormFolding.Apply(model));
    }
}
