using Compress.Core.Data;
using Compress.Core.Diagnostics;
using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Tests.TestSupport;
using Microsoft.ML.OnnxRuntime;
using Xunit;
using Xunit.Abstractions;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Core.Tests.Passes.Quantization;

/// <summary>
/// A weight read by several nodes (ALBERT-style layer sharing, or one matrix read both as Gemm B with <c>transB</c> and as
/// MatMul B): weight-only quantization stores its codes once, and every reader computes with the quantized weight in its
/// own layout, in each form.
/// </summary>
public sealed class SharedWeightTests(ITestOutputHelper output) : TempDirectoryTest
{
    private const int Width = 64;
    private const int Batch = 16;

    [Theory]
    [InlineData("int8", 1)]
    [InlineData("float", 1)]
    [InlineData("kernel", 1)] // unpacked at load: MatMulNBits cannot serve the MatMul reading the weight in the other layout
    [InlineData("dynamic", 2)] // one int8 copy per layout
    [InlineData("static", 2)] // one int8 DequantizeLinear input per layout (per-channel scales along each reader's output axis)
    public void A_weight_read_by_several_nodes_is_stored_once_and_each_reader_sees_its_own_layout(string form, int copies)
    {
        var source = Path.Combine(Dir, "shared.onnx");
        SharedModel().Save(source);
        var path = Path.Combine(Dir, $"{form}.onnx");
        var quantize = form is "dynamic" or "static" ? $"\"weights\": \"int8\", \"activations\": \"{(form == "static" ? "uint8" : "dynamic")}\"" : $"\"weights\": \"int4\", \"activations\": \"none\", \"method\": \"rtn\", \"form\": \"{form}\"";
        var calibration = Path.Combine(Dir, "calibration.npz");
        ArrayFile.Write(calibration, NpyArray.Create("x", Input(128, 0.11), 128, Width));
        var spec = $$"""
            { "data": { "calibration": { "path": {{SpecFiles.Quote(calibration)}} } },
              "steps": [ { "quantize": { {{quantize}} } } ], "constraints": { "minAgreement": 0 } }
            """;
        CompressionPipeline.Run(source, SpecFiles.Load(Dir, spec), path, measureLatency: false);

        var written = OnnxModel.Load(path).Graph;
        Assert.Null(written.GetInitializer("w"));
        var codes = written.Initializers.Values.Where(i => i.DataType is (int)DataType.Uint8 or (int)DataType.Int8 && i.Dims.Aggregate(1L, (a, b) => a * b) >= Width * Width / 2).ToList();
        output.WriteLine($"{form}: {string.Join(", ", codes.Select(c => $"{c.Name} [{string.Join(",", c.Dims)}]"))}; nodes {string.Join(" ", written.Nodes.Select(n => n.OpType).Distinct())}");
        Assert.Equal(copies, codes.Count); // the codes once for all three readers (dynamic int8: once per layout)

        var x = Input(Batch, 0.37);
        var cosine = Cosine(Run(source, x), Run(path, x));
        output.WriteLine($"{form}: output cosine {cosine:0.00000}");
        Assert.True(cosine > 0.99, $"cosine {cosine}");
    }

    /// <summary>
    /// Below opset 11 the float form's chain cannot be written (BitShift is opset 11), so a weight MatMulNBits cannot serve
    /// for every reader stays MatMulNBits for its own layout while the other reader keeps the float weight: here that is
    /// larger than the source, which the run refuses (CMP0035) — not a model ONNX Runtime cannot load.
    /// </summary>
    [Fact]
    public void Below_opset_11_a_shared_weight_keeps_the_kernel_form_and_no_chain()
    {
        var source = Path.Combine(Dir, "shared10.onnx");
        SharedModel(opset: 10).Save(source);
        var path = Path.Combine(Dir, "kernel10.onnx");
        var spec = """{ "steps": [ { "quantize": { "weights": "int4", "activations": "none", "method": "rtn", "form": "kernel" } } ] }""";
        var e = Assert.Throws<CompressException>(() => CompressionPipeline.Run(source, SpecFiles.Load(Dir, spec), path, measureLatency: false));
        output.WriteLine(e.Message);
        Assert.Equal(DiagnosticCodes.ArtifactLarger, e.Diagnostic.Code);
        Assert.False(File.Exists(path));
    }

    private static double Cosine(float[] expected, float[] actual)
    {
        double dot = 0, aa = 0, bb = 0;
        for (var i = 0; i < expected.Length; i++)
        {
            dot += expected[i] * actual[i];
            aa += expected[i] * expected[i];
            bb += actual[i] * actual[i];
        }

        return dot / Math.Sqrt(aa * bb);
    }

    /// <summary>y = Gemm(relu(Gemm(x, w, transB)), w, transB) + MatMul(relu(Gemm(x, w, transB)), w): w [64, 64] read three times, in two layouts.</summary>
    private static OnnxModel SharedModel(long opset = 17)
    {
        var random = new Random(3);
        var w = Enumerable.Range(0, Width * Width).Select(_ => (float)(random.NextDouble() * 2 - 1) / 8).ToArray();
        return new GraphBuilder("shared")
            .Opset("", opset)
            .Input("x", DataType.Float, "N", Width)
            .Initializer("w", w, Width, Width)
            .Node("Gemm", ["x", "w"], ["h0"], "first", "", OnnxAttribute.Int("transB", 1))
            .Node("Relu", ["h0"], ["h"], "relu")
            .Node("Gemm", ["h", "w"], ["a"], "second", "", OnnxAttribute.Int("transB", 1))
            .Node("MatMul", ["h", "w"], ["b"], "third")
            .Node("Add", ["a", "b"], ["y"], "sum")
            .Output("y", DataType.Float, "N", Width)
            .Build();
    }

    private static float[] Input(int rows, double step) => Enumerable.Range(0, rows * Width).Select(i => (float)Math.Sin(i * step)).ToArray();

    private static float[] Run(string model, float[] x)
    {
        using var session = new InferenceSession(model);
        using var value = OrtValue.CreateTensorValueFromMemory(x, [Batch, Width]);
        using var runOptions = new RunOptions();
        using var results = session.Run(runOptions, ["x"], [value], ["y"]);
        return results[0].GetTensorDataAsSpan<float>().ToArray();
    }
}
