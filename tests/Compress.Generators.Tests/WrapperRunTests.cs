using System.Reflection;
using Compress.Core;
using Compress.Core.Onnx;
using Compress.Core.Reports;
using Compress.Runtime;
using Compress.Spec.Manifest;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Generators.Tests;

/// <summary>Generated wrappers compiled and run against real models give what the raw ONNX Runtime API gives.</summary>
public sealed class WrapperRunTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "compress-generator-tests", Guid.NewGuid().ToString("N"));

    public WrapperRunTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void The_wrapper_of_a_compressed_mlp_matches_the_raw_api_bit_for_bit()
    {
        var spec = Path.Combine(_dir, "spec.json");
        File.WriteAllText(spec, """{ "steps": [ { "prune": { "sparsity": 0.5 } }, { "quantize": { "weights": "int8", "activations": "dynamic" } } ] }""");
        var model = Path.Combine(_dir, "fashion.onnx");
        var report = CompressionPipeline.Run(Compress.Tests.Shared.Repository.Path("models", "fashion_mlp.onnx"), Core.Spec.SpecLoader.Load(spec), model, measureLatency: false);
        var manifest = ManifestFactory.Create(report, new ManifestIdentity("Fashion", "Test", true, "fashion.onnx"));

        var wrapper = Wrapper(manifest, "Test.FashionModel", model);
        var pixels = Enumerable.Range(0, 3 * 784).Select(i => (float)((i * 7919 % 256) / 255.0)).ToArray();
        var output = Invoke(wrapper, [new ReadOnlyMemory<float>(pixels), null]); // batch inferred: 3
        var logits = (ModelTensor<float>)Property(output, "Logits");
        Assert.Equal([3L, 10L], logits.Shape);

        using var session = RawSession(model);
        using var input = OrtValue.CreateTensorValueFromMemory(pixels, [3, 784]);
        using var raw = session.Run(new RunOptions(), ["input"], [input], ["logits"]);
        Assert.Equal(raw[0].GetTensorDataAsSpan<float>().ToArray(), logits.Data);

        var error = Assert.Throws<TargetInvocationException>(() => Invoke(wrapper, [new ReadOnlyMemory<float>(pixels), 2L]));
        Assert.Equal("Input 'input' [batch, 784] = [2, 784] needs 1568 values; 2352 were given. (Parameter 'input')", error.InnerException!.Message);
        ((IDisposable)wrapper).Dispose();
    }

    [Fact]
    public void Fp16_int64_and_string_inputs_and_outputs_round_trip_through_the_wrapper()
    {
        var model = new GraphBuilder("types")
            .Input("values", DataType.Float16, "n", 4).Input("token_ids", DataType.Int64, "n", 3).Input("text", DataType.String, "n")
            .Node("Identity", ["values"], ["same"], "same")
            .Node("Cast", ["values"], ["wide"], "wide", "", OnnxAttribute.Int("to", (long)DataType.Float))
            .Node("ArgMax", ["wide"], ["argmax"], "argmax", "", OnnxAttribute.Int("axis", 1), OnnxAttribute.Int("keepdims", 0))
            .Node("Identity", ["token_ids"], ["tags"], "tags")
            .Node("Identity", ["text"], ["label"], "label")
            .Output("same", DataType.Float16, "n", 4).Output("argmax", DataType.Int64, "n").Output("tags", DataType.Int64, "n", 3).Output("label", DataType.String, "n")
            .Build();
        var path = Path.Combine(_dir, "types.onnx");
        model.Save(path);
        var signature = Compress.Spec.Onnx.OnnxSignatureReader.Read(path);
        var manifest = new ModelManifest { Name = "Types", Namespace = "Test", ArtifactPath = "types.onnx", Source = path };
        manifest.Inputs.AddRange(signature.Inputs);
        manifest.Outputs.AddRange(signature.Outputs);

        var wrapper = Wrapper(manifest, "Test.TypesModel", path);
        Half[] values = [(Half)1.5f, (Half)(-2f), (Half)7.25f, (Half)0f, (Half)3f, (Half)9.5f, (Half)(-1f), (Half)2f];
        long[] ids = [10, 20, 30, 40, 50, 60];
        string[] text = ["zwei Wörter", "ünïcödé ✓"];
        var output = Invoke(wrapper, [new ReadOnlyMemory<Half>(values), new ReadOnlyMemory<long>(ids), text, null]);

        Assert.Equal(values, ((ModelTensor<Half>)Property(output, "Same")).Data);
        Assert.Equal([2L, 1L], ((ModelTensor<long>)Property(output, "Argmax")).Data);
        Assert.Equal(ids, ((ModelTensor<long>)Property(output, "Tags")).Data);
        Assert.Equal([2L, 3L], ((ModelTensor<long>)Property(output, "Tags")).Shape);
        Assert.Equal(text, ((ModelTensor<string>)Property(output, "Label")).Data);

        // The raw API on the same inputs.
        using var session = RawSession(path);
        using var rawValues = OrtValue.CreateTensorValueFromMemory(System.Runtime.InteropServices.MemoryMarshal.Cast<Half, Float16>(values).ToArray(), [2, 4]);
        using var rawIds = OrtValue.CreateTensorValueFromMemory(ids, [2, 3]);
        using var rawText = OrtValue.CreateFromStringTensor(new DenseTensor<string>(text, [2]));
        using var raw = session.Run(new RunOptions(), ["values", "token_ids", "text"], [rawValues, rawIds, rawText], ["same", "argmax"]);
        Assert.Equal(raw[1].GetTensorDataAsSpan<long>().ToArray(), ((ModelTensor<long>)Property(output, "Argmax")).Data);
        ((IDisposable)wrapper).Dispose();
    }

    [Fact]
    public void A_missing_model_file_is_a_clear_error()
    {
        var manifest = new ModelManifest { Name = "Gone", Namespace = "Test", ArtifactPath = "gone.onnx" };
        manifest.Inputs.Add(new ManifestValue { Name = "x", ElementType = "float", Shape = [new(1, null)] });
        manifest.Outputs.Add(new ManifestValue { Name = "y", ElementType = "float", Shape = [new(1, null)] });
        var assembly = Compile(manifest);
        var load = assembly.GetType("Test.GoneModel")!.GetMethod("Load", [typeof(string), typeof(ModelOptions)])!;
        var error = Assert.Throws<TargetInvocationException>(() => load.Invoke(null, [Path.Combine(_dir, "gone.onnx"), null]));
        var missing = Assert.IsType<FileNotFoundException>(error.InnerException);
        Assert.Contains("gone.onnx' does not exist", missing.Message, StringComparison.Ordinal);
    }

    private static Assembly Compile(ModelManifest manifest)
    {
        var (_, output, diagnostics) = GeneratorHarness.Run(GeneratorHarness.Compilation(), ("/obj/m.manifest.json", ManifestJson.Write(manifest)));
        Assert.Empty(diagnostics);
        return GeneratorHarness.Load(output);
    }

    private static object Wrapper(ModelManifest manifest, string type, string modelPath)
    {
        var load = Compile(manifest).GetType(type)!.GetMethod("Load", [typeof(string), typeof(ModelOptions)])!;
        return load.Invoke(null, [modelPath, new ModelOptions { IntraOpThreads = 1 }])!;
    }

    private static object Invoke(object wrapper, object?[] arguments) => wrapper.GetType().GetMethod("Run")!.Invoke(wrapper, arguments)!;

    private static object Property(object output, string name) => output.GetType().GetProperty(name)!.GetValue(output)!;

    private static InferenceSession RawSession(string path)
    {
        using var options = new SessionOptions { IntraOpNumThreads = 1 };
        return new InferenceSession(path, options);
    }
}
