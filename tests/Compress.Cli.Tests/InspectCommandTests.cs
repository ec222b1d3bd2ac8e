using System.Text.Json;
using Compress.Cli;
using Compress.Core.Onnx;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Cli.Tests;

public sealed class InspectCommandTests : CliTest
{

    [Fact]
    public void Table_shows_operators_weights_and_io()
    {
        var path = SaveMlp();
        var (code, stdout, stderr) = Run("inspect", path);
        Assert.Equal(0, code);
        Assert.Empty(stderr);
        Assert.Contains("opsets: ai.onnx 17", stdout);
        Assert.Contains("parameters: 2,409", stdout);
        Assert.Contains("[batch, 32]", stdout);
        Assert.Contains("fc1.weight", stdout);
        Assert.Contains("Gemm", stdout);
        Assert.False(stdout.Contains('\u001b'), "escape codes written when not on a terminal");
    }

    [Fact]
    public void Json_is_the_documented_shape()
    {
        var path = SaveMlp(external: true);
        var (code, stdout, _) = Run("inspect", path, "--json");
        Assert.Equal(0, code);
        using var json = JsonDocument.Parse(stdout);
        var root = json.RootElement;
        Assert.Equal(8, root.GetProperty("irVersion").GetInt64());
        Assert.Equal("ai.onnx", root.GetProperty("opsets")[0].GetProperty("domain").GetString());

        var input = root.GetProperty("inputs")[0];
        Assert.Equal("x", input.GetProperty("name").GetString());
        Assert.Equal("tensor(float)", input.GetProperty("type").GetString());
        Assert.Equal("batch", input.GetProperty("shape")[0].GetString());
        Assert.Equal(32, input.GetProperty("shape")[1].GetInt64());

        var ops = root.GetProperty("operators").EnumerateArray().ToDictionary(o => o.GetProperty("opType").GetString()!, o => o.GetProperty("count").GetInt32());
        Assert.Equal(2, ops["Gemm"]);
        Assert.Equal(1, ops["Relu"]);

        var fc1 = root.GetProperty("initializers").EnumerateArray().Single(i => i.GetProperty("name").GetString() == "fc1.weight");
        Assert.Equal(2048, fc1.GetProperty("parameters").GetInt64());
        Assert.Equal(8192, fc1.GetProperty("bytes").GetInt64());
        Assert.Equal("external", fc1.GetProperty("storage").GetString());

        var layer = root.GetProperty("layers").EnumerateArray().First();
        Assert.Equal("fc1", layer.GetProperty("node").GetString());
        Assert.Equal(2048 + 64, layer.GetProperty("parameters").GetInt64());

        var file = root.GetProperty("externalDataFiles")[0];
        Assert.Equal("mlp.onnx.data", file.GetProperty("location").GetString());
        Assert.Equal(1, file.GetProperty("tensors").GetInt32());
        Assert.Equal(2409, root.GetProperty("totals").GetProperty("parameters").GetInt64());
    }

    [Fact]
    public void Missing_model_prints_a_canonical_error()
    {
        var missing = Path.Combine(Dir, "missing.onnx");
        var (code, stdout, stderr) = Run("inspect", missing);
        Assert.Equal(1, code);
        Assert.Empty(stdout);
        Assert.Equal($"{missing}: error CMP0001: model file not found", stderr.Trim());
    }

    [Fact]
    public void Corrupt_model_prints_CMP0002()
    {
        var path = Path.Combine(Dir, "corrupt.onnx");
        File.WriteAllBytes(path, [0x3A, 0xFF, 0xFF, 0xFF, 0x07, 0x01]);
        var (code, _, stderr) = Run("inspect", path);
        Assert.Equal(1, code);
        Assert.StartsWith($"{path}: error CMP0002:", stderr.Trim());
    }

    [Fact]
    public void Usage_errors_are_CMP0009()
    {
        var (code, _, stderr) = Run("inspect");
        Assert.Equal(1, code);
        Assert.StartsWith("compress: error CMP0009:", stderr.Trim());

        (code, _, stderr) = Run("inspect", "x.onnx", "--no-such-option");
        Assert.Equal(1, code);
        Assert.Contains("CMP0009", stderr);
    }

    private string SaveMlp(bool external = false)
    {
        var random = new Random(1);
        float[] Values(int n) => Enumerable.Range(0, n).Select(_ => (float)random.NextDouble()).ToArray();
        var model = new GraphBuilder("mlp")
            .Input("x", DataType.Float, "batch", 32)
            .Initializer("fc1.weight", Values(64 * 32), 64, 32)
            .Initializer("fc1.bias", Values(64), 64)
            .Initializer("fc2.weight", Values(32 * 9), 9, 32)
            .Initializer("fc2.bias", Values(9), 9)
            .Node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["h"], "fc1", "", OnnxAttribute.Int("transB", 1))
            .Node("Relu", ["h"], ["r"], "relu")
            .Node("Gemm", ["r", "fc2.weight", "fc2.bias"], ["y"], "fc2", "", OnnxAttribute.Int("transB", 1))
            .Output("y", DataType.Float, "batch", 9)
            .Build();
        var path = Path.Combine(Dir, "mlp.onnx");
        model.Save(path, new OnnxWriteOptions { ExternalData = external ? ExternalDataMode.Always : ExternalDataMode.Never, ExternalThreshold = 4096 });
        return path;
    }
}
