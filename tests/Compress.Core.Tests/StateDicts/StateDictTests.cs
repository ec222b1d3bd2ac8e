using Compress.Core.Data;
using Compress.Core.Diagnostics;
using Compress.Core.StateDicts;
using Compress.Core.Tests.TestSupport;
using Compress.Core.Torch;
using Compress.Runtime.StateDicts;
using Compress.Runtime.TorchSharp;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Compress.Core.Tests.StateDicts;

/// <summary>
/// TorchSharp state dicts (<c>Module.save</c>): the format read and written byte for byte as TorchSharp does;
/// a model trained here compressed and restored with <c>LoadInto</c>; mismatches listed.
/// </summary>
public sealed class StateDictTests(ITestOutputHelper output) : TempDirectoryTest
{
    [Fact]
    public void The_format_is_read_and_written_exactly_as_TorchSharp_does()
    {
        TorchRuntime.EnsureLoaded();
        var module = Mlp(16);
        var path = Path.Combine(Dir, "model.dat");
        module.save(path);
        var entries = StateDictFile.Read(path);
        var expected = module.state_dict();
        Assert.Equal(expected.Keys, entries.Select(e => e.Name));
        Assert.All(entries, e => Assert.Equal(expected[e.Name].shape, e.Shape));
        Assert.Contains(entries, e => e.Type == StateDictElementType.Int64); // BatchNorm's num_batches_tracked

        var copy = Path.Combine(Dir, "copy.dat");
        StateDictFile.Write(copy, entries);
        Assert.Equal(File.ReadAllBytes(path), File.ReadAllBytes(copy));
        Mlp(16).load(copy);
    }

    [Fact]
    public void A_truncated_state_dict_is_refused_at_its_path()
    {
        TorchRuntime.EnsureLoaded();
        var path = Path.Combine(Dir, "model.dat");
        Mlp(16).save(path);
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        var spec = SpecFiles.Load(Dir, """{ "steps": [ { "quantize": { "weights": "fp16" } } ] }""");
        var error = Assert.Throws<CompressException>(() => StateDictCompressor.Run(path, spec, Path.Combine(Dir, "out.dat")));
        Assert.Equal(DiagnosticCodes.ModelMalformed, error.Diagnostic.Code);
        Assert.Equal(path, error.Diagnostic.File);
        Assert.Contains("truncated", error.Message);
        Assert.False(File.Exists(Path.Combine(Dir, "out.dat")));
    }

    /// <summary>A state dict has no graph to run: a fidelity constraint is refused, never silently ignored.</summary>
    [Theory]
    [InlineData("minCosine", "0.99")]
    [InlineData("minSqnrDb", "30")]
    [InlineData("minAgreement", "0.9")]
    public void Fidelity_constraints_on_a_state_dict_are_refused(string constraint, string value)
    {
        TorchRuntime.EnsureLoaded();
        var path = Path.Combine(Dir, "model.dat");
        Mlp(16).save(path);
        var spec = SpecFiles.Load(Dir, $$"""{ "steps": [ { "quantize": { "weights": "fp16" } } ], "constraints": { "{{constraint}}": {{value}} } }""");
        var error = Assert.Throws<CompressException>(() => StateDictCompressor.Run(path, spec, Path.Combine(Dir, "out.dat")));
        Assert.Contains("constraints need a model that can be evaluated", error.Message);
        Assert.False(File.Exists(Path.Combine(Dir, "out.dat")));
    }

    [Theory]
    // 1.5 points: this briefly trained model (73.24%) loses 1.01 under the scale-free (LAMP) global threshold, 0.9 before.
    [InlineData("""{ "prune": { "sparsity": 0.5 } }, { "quantize": { "weights": "int8", "activations": "none" } }""", 0.20, 0.015)]
    [InlineData("""{ "quantize": { "weights": "int4", "blockSize": 32 } }""", 0.18, 0.02)]
    [InlineData("""{ "quantize": { "weights": "fp16" } }""", 0.51, 0.002)]
    public void A_trained_model_round_trips_through_compression_and_LoadInto(string steps, double maxRatio, double maxDrop)
    {
        TorchRuntime.EnsureLoaded();
        var (trainX, trainY) = FashionModules.Load(FashionData.Calibration(false));
        var (testX, testY) = FashionModules.Load(FashionData.Test(false));
        manual_seed(11);
        var module = Mlp(128);
        FashionModules.Train(module, trainX, trainY);

        var dense = FashionModules.Accuracy(module, testX, testY);
        var path = Path.Combine(Dir, "model.dat");
        module.save(path);
        var spec = SpecFiles.Load(Dir, $$"""{ "steps": [ {{steps}} ] }""");
        var report = StateDictCompressor.Run(path, spec, Path.Combine(Dir, "model.compressed.dat"));
        var restored = Mlp(128);
        StateDictLoader.LoadInto(restored, report.Output);
        var accuracy = FashionModules.Accuracy(restored, testX, testY);
        output.WriteLine($"{steps}: {report.Size.OriginalBytes:N0} → {report.Size.CompressedBytes:N0} B ({report.Size.Ratio:0.000}×), accuracy {dense:P2} → {accuracy:P2}");
        Assert.True(report.Size.Ratio <= maxRatio, $"size ratio {report.Size.Ratio:0.000}");
        Assert.True(dense - accuracy <= maxDrop, $"accuracy {dense:P2} → {accuracy:P2}");
    }

    [Fact]
    public void A_module_that_does_not_fit_gets_every_mismatch_and_stays_as_it_was()
    {
        TorchRuntime.EnsureLoaded();
        var path = Path.Combine(Dir, "model.dat");
        Mlp(16).save(path);
        var other = nn.Sequential(("fc1", nn.Linear(784, 32)), ("relu", nn.ReLU()), ("head", nn.Linear(32, 10)));
        var before = other.state_dict()["fc1.weight"].clone();
        var error = Assert.Throws<StateDictMismatchException>(() => StateDictLoader.LoadInto(other, path));
        output.WriteLine(error.Message);
        Assert.Contains(error.Mismatches, m => m.Contains("'fc1.weight' is [16, 784] in the file but [32, 784] in the module"));
        Assert.Contains(error.Mismatches, m => m.Contains("'fc2.weight' [10, 16] is in the file but not in the module"));
        Assert.Contains(error.Mismatches, m => m.Contains("'head.bias' [10] is in the module but not in the file"));
        Assert.Contains(error.Mismatches, m => m.Contains("'bn.running_mean'"));
        Assert.True(other.state_dict()["fc1.weight"].allclose(before, 0, 0));
    }

    [Theory]
    [InlineData("""{ "prune": { "method": "woodfisher", "sparsity": 0.5 } }""", "is not offered for TorchSharp state-dict models")]
    [InlineData("""{ "quantize": { "weights": "int8", "activations": "dynamic" } }""", "needs an ONNX graph")]
    public void Methods_that_need_a_graph_are_refused_at_their_step(string step, string message)
    {
        TorchRuntime.EnsureLoaded();
        var path = Path.Combine(Dir, "model.dat");
        Mlp(16).save(path);
        File.WriteAllBytes(Path.Combine(Dir, "calib.npz"), [0]);
        var spec = SpecFiles.Load(Dir, $$"""{ "data": { "calibration": { "path": "calib.npz" } }, "steps": [ {{step}} ] }""");
        var error = Assert.Throws<CompressException>(() => StateDictCompressor.Run(path, spec, Path.Combine(Dir, "out.dat")));
        Assert.Equal("CMP0107", error.Diagnostic.Code);
        Assert.Contains(message, error.Message);
        Assert.Equal(1, error.Diagnostic.Line);
    }

    /// <summary>The state dict runs through the same step loop as ONNX: a step that selects nothing is warned about.</summary>
    [Fact]
    public void A_step_that_changes_nothing_is_warned_about_as_for_onnx()
    {
        TorchRuntime.EnsureLoaded();
        var path = Path.Combine(Dir, "model.dat");
        Mlp(16).save(path);
        var spec = SpecFiles.Load(Dir, """{ "steps": [ { "quantize": { "weights": "fp16" } }, { "prune": { "sparsity": 0.5, "include": ["decoder.*"] } } ] }""");
        var report = StateDictCompressor.Run(path, spec, Path.Combine(Dir, "out.dat"));
        var warning = Assert.Single(report.Warnings!, w => w.Code != DiagnosticCodes.NotCheckedOnRealData); // that one: no data in the spec
        Assert.Equal(DiagnosticCodes.StepChangedNothing, warning.Code);
        Assert.Contains("step 'prune/magnitude' (spec line 1) changed nothing in the model: none of the state dict's float32 weights", warning.Message);
        Assert.Equal(16, report.Layers.Single(l => l.Weight == "fc1.weight").Bits);
    }

    private static TorchSharp.Modules.Sequential Mlp(int hidden) => nn.Sequential(
        ("fc1", nn.Linear(784, hidden)), ("bn", nn.BatchNorm1d(hidden)), ("relu", nn.ReLU()), ("fc2", nn.Linear(hidden, 10)));
}
