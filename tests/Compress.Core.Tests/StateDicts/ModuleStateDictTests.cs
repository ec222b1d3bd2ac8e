using Compress.Core.Data;
using Compress.Core.Diagnostics;
using Compress.Core.Reports;
using Compress.Core.StateDicts;
using Compress.Core.Tests.TestSupport;
using Compress.Core.Torch;
using Compress.Runtime.TorchSharp;
using TorchSharp.Modules;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Compress.Core.Tests.StateDicts;

/// <summary>
/// A TorchSharp state dict with the app's module type named in the spec (<c>module</c>): the module built from the
/// type, the state dict run in it, so the result is measured on the 10,000 Fashion-MNIST test images, constraints are
/// checked and <c>finetune</c> distills through the module's autograd; and every way the module can fail to be found,
/// built or fitted, at the spec's <c>module</c> object.
/// </summary>
public sealed class ModuleStateDictTests(TrainedFashionMlp trained, ITestOutputHelper output) : TempDirectoryTest, IClassFixture<TrainedFashionMlp>
{
    private const string ModuleType = "Compress.Core.Tests.StateDicts.FashionMlpModule, Compress.Core.Tests";
    private const string Prune = """{ "prune": { "sparsity": 0.9 } }""";
    private const string Finetune = """{ "finetune": { "steps": 150, "batchSize": 128 } }""";

    [Fact]
    public void Finetune_recovers_the_pruned_module_measured_by_running_it_and_the_artifact_restores_what_was_measured()
    {
        var without = Compress(Prune, "without.dat");
        var with = Compress($"{Prune}, {Finetune}", "with.dat");
        var again = Compress($"{Prune}, {Finetune}", "again.dat");
        output.WriteLine($"FashionMlpModule at 90%: {without.Metrics!.CompressedAccuracy:P2} without finetune, {with.Metrics!.CompressedAccuracy:P2} with; dense {with.Metrics.OriginalAccuracy:P2}");
        output.WriteLine(string.Join("\n", with.Notes));

        Assert.Equal(trained.DenseAccuracy, with.Metrics.OriginalAccuracy!.Value, 6);
        Assert.True(with.Metrics.CompressedAccuracy > without.Metrics.CompressedAccuracy + 0.03,
            $"{without.Metrics.CompressedAccuracy:P2} → {with.Metrics.CompressedAccuracy:P2}");
        Assert.Contains(with.Notes, n => n.StartsWith("finetune: distilled the original model's 'output'", StringComparison.Ordinal));
        Assert.Contains(with.Notes, n => n.Contains("run in Compress.Core.Tests.StateDicts.FashionMlpModule", StringComparison.Ordinal));
        Assert.Equal(File.ReadAllBytes(with.Output), File.ReadAllBytes(again.Output));

        // What the app restores is what was measured, and the masks held: exactly the pruned weights are zero.
        using var pruned = Restore(without.Output);
        using var restored = Restore(with.Output);
        Assert.Equal(with.Metrics.CompressedAccuracy!.Value, TrainedFashionMlp.Accuracy(restored), 6);
        var before = pruned.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, after) in restored.named_parameters().Where(p => p.parameter.dim() >= 2))
        {
            Assert.True(after.eq(0).eq(before[name].eq(0)).all().item<bool>(), $"{name}: zeros moved");
            Assert.True(after.ne(before[name]).any().item<bool>(), $"{name} did not train");
        }
    }

    [Fact]
    public void Int8_and_int4_weights_train_on_the_grids_the_artifact_stores()
    {
        foreach (var (bits, quantize) in new[] { (8, """{ "quantize": { "weights": "int8", "activations": "none" } }"""), (4, """{ "quantize": { "weights": "int4", "blockSize": 32 } }""") })
        {
            var steps = $"{Prune}, {quantize}";
            var without = Compress(steps, $"int{bits}-without.dat");
            var with = Compress($$"""{{steps}}, { "finetune": { "steps": 100, "batchSize": 128 } }""", $"int{bits}-with.dat");
            output.WriteLine($"90% + int{bits}: {without.Metrics!.CompressedAccuracy:P2} without finetune, {with.Metrics!.CompressedAccuracy:P2} with; {without.Size.CompressedBytes:N0} → {with.Size.CompressedBytes:N0} B");
            Assert.True(with.Metrics.CompressedAccuracy > without.Metrics.CompressedAccuracy + 0.02, $"int{bits}: {without.Metrics.CompressedAccuracy:P2} → {with.Metrics.CompressedAccuracy:P2}");
            Assert.All(with.Layers.Where(l => l.Weight.EndsWith(".weight", StringComparison.Ordinal)), l => Assert.Equal(bits, l.Bits));
            Assert.True(with.Size.CompressedBytes <= without.Size.CompressedBytes * 1.02, $"{without.Size.CompressedBytes} → {with.Size.CompressedBytes} B");
            using var restored = Restore(with.Output);
            Assert.Equal(with.Metrics.CompressedAccuracy!.Value, TrainedFashionMlp.Accuracy(restored), 6);
        }
    }

    [Fact]
    public void A_constraint_is_checked_by_running_the_module_and_a_miss_writes_nothing()
    {
        var path = Path.Combine(Dir, "out.dat");
        var error = Assert.Throws<CompressException>(() => Compress("""{ "prune": { "sparsity": 0.97 } }""", "out.dat", constraints: """{ "maxAccuracyDrop": 0.01 }"""));
        output.WriteLine(error.Message);
        Assert.Equal(DiagnosticCodes.ConstraintNotMet, error.Diagnostic.Code);
        Assert.False(File.Exists(path));
    }

    [Theory]
    [InlineData("""{ "type": "Compress.Core.Tests.StateDicts.NoSuchModule, Compress.Core.Tests" }""", DiagnosticCodes.ModuleTypeNotFound, "has no type 'Compress.Core.Tests.StateDicts.NoSuchModule'")]
    [InlineData("""{ "type": "Some.Module, Some.Assembly" }""", DiagnosticCodes.ModuleTypeNotFound, "the assembly 'Some.Assembly' of 'Some.Module' is not among the project's references")]
    [InlineData("""{ "type": "Compress.Core.Tests.StateDicts.FashionMlpModule, Compress.Core.Tests" }""", DiagnosticCodes.ModuleNotBuilt, "FashionMlpModule(Int32 hidden, String name = fashion_mlp)")]
    [InlineData("""{ "type": "Compress.Core.Tests.StateDicts.FashionMlpModule, Compress.Core.Tests", "arguments": ["wide"] }""", DiagnosticCodes.ModuleNotBuilt, "takes the arguments (\"wide\")")]
    [InlineData("""{ "type": "Compress.Core.Tests.StateDicts.FashionMlpModule, Compress.Core.Tests", "arguments": [-1] }""", DiagnosticCodes.ModuleNotBuilt, "threw")]
    [InlineData("""{ "type": "Compress.Core.Tests.TestSupport.SpecFiles, Compress.Core.Tests" }""", DiagnosticCodes.ModuleNotBuilt, "is not a TorchSharp module")]
    [InlineData("""{ "type": "Compress.Core.Tests.StateDicts.FashionMlpModule, Compress.Core.Tests", "arguments": [64] }""", DiagnosticCodes.ModuleStateDictMismatch, "'fc1.weight' is [128, 784] in the file but [64, 784] in the module")]
    public void A_module_that_cannot_be_found_built_or_fitted_is_refused_with_its_code(string module, string code, string message)
    {
        TorchRuntime.EnsureLoaded();
        var spec = SpecFiles.Load(Dir, $$"""
            {
              "module": {{module}},
              "steps": [ {{Prune}} ]
            }
            """);
        var error = Assert.Throws<CompressException>(() => StateDictCompressor.Run(trained.Path, spec, Path.Combine(Dir, "out.dat")));
        output.WriteLine(error.Message);
        Assert.Equal(code, error.Diagnostic.Code);
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
        if (code != DiagnosticCodes.ModuleStateDictMismatch)
        {
            Assert.Equal((spec.File, 2, 13), (error.Diagnostic.File!, error.Diagnostic.Line, error.Diagnostic.Column));
        }

        Assert.False(File.Exists(Path.Combine(Dir, "out.dat")));
    }

    /// <summary>
    /// The type found in the file the spec's 'assembly' names (loaded into its own context, TorchSharp shared with the
    /// engine), the same result as the type found by name, and the assembly loaded once for both runs.
    /// </summary>
    [Fact]
    public void The_module_is_found_in_the_assembly_file_the_spec_names()
    {
        TorchRuntime.EnsureLoaded();
        var file = typeof(FashionMlpModule).Assembly.Location;
        var spec = $$"""
            { "module": { "type": "Compress.Core.Tests.StateDicts.FashionMlpModule", "assembly": {{SpecFiles.Quote(file)}}, "arguments": [128] },
              "data": { "evaluation": { "path": {{SpecFiles.Quote(FashionData.Test(image: false))}}, "labels": "labels" } },
              "steps": [ { "prune": { "sparsity": 0.5 } } ] }
            """;
        var first = StateDictCompressor.Run(trained.Path, SpecFiles.Load(Dir, spec), Path.Combine(Dir, "first.dat"));
        var second = StateDictCompressor.Run(trained.Path, SpecFiles.Load(Dir, spec), Path.Combine(Dir, "second.dat"));
        var byName = Compress("""{ "prune": { "sparsity": 0.5 } }""", "by-name.dat");
        Assert.Equal(byName.Metrics!.CompressedAccuracy, first.Metrics!.CompressedAccuracy);
        Assert.Equal(File.ReadAllBytes(first.Output), File.ReadAllBytes(second.Output));
        Assert.Single(AppDomain.CurrentDomain.GetAssemblies(), a => a.Location == file && System.Runtime.Loader.AssemblyLoadContext.GetLoadContext(a)!.Name!.StartsWith("compress-module", StringComparison.Ordinal));
    }

    /// <summary>The app's forward pass throwing (here on every call) is CMP0086 at the spec's 'module', not an internal error.</summary>
    [Fact]
    public void A_forward_pass_that_throws_is_reported_at_the_module()
    {
        TorchRuntime.EnsureLoaded();
        var spec = SpecFiles.Load(Dir, $$"""
            {
              "module": { "type": "Compress.Core.Tests.StateDicts.BrokenForwardModule, Compress.Core.Tests", "arguments": [128] },
              "data": { "evaluation": { "path": {{SpecFiles.Quote(FashionData.Test(image: false))}}, "labels": "labels" } },
              "steps": [ {{Prune}} ]
            }
            """);
        var error = Assert.Throws<CompressException>(() => StateDictCompressor.Run(trained.Path, spec, Path.Combine(Dir, "out.dat")));
        output.WriteLine(error.Message);
        Assert.Equal(DiagnosticCodes.ModuleForwardFailed, error.Diagnostic.Code);
        Assert.Contains("BrokenForwardModule's forward pass failed while comparing it on fashion_test_flat.npz: InvalidOperationException: the app's own bug", error.Message, StringComparison.Ordinal);
        Assert.Equal((2, 13), (error.Diagnostic.Line, error.Diagnostic.Column));
        Assert.False(File.Exists(Path.Combine(Dir, "out.dat")));
    }

    /// <summary>An ONNX model carries its own graph: a 'module' in its spec is a mistake, said at its place.</summary>
    [Fact]
    public void A_module_in_the_spec_of_an_onnx_model_is_refused_at_its_place()
    {
        var spec = SpecFiles.Load(Dir, $$"""
            { "module": { "type": "{{ModuleType}}", "arguments": [128] },
              "steps": [ {{Prune}} ] }
            """);
        var error = Assert.Throws<CompressException>(() => CompressionPipeline.Run(FashionData.MlpModel, spec, Path.Combine(Dir, "out.onnx"), measureLatency: false));
        Assert.Equal(global::Compress.Spec.SpecCodes.Inconsistent, error.Diagnostic.Code);
        Assert.Contains("this is an ONNX model, which carries its own code", error.Message, StringComparison.Ordinal);
        Assert.Equal(1, error.Diagnostic.Line);
    }

    private CompressionReport Compress(string steps, string outputName, string constraints = """{ "minAgreement": 0 }""")
    {
        TorchRuntime.EnsureLoaded();
        var spec = SpecFiles.Load(Dir, $$"""
            { "module": { "type": "{{ModuleType}}", "arguments": [128] },
              "data": { "calibration": { "path": {{SpecFiles.Quote(FashionData.Calibration(image: false))}} },
                        "evaluation": { "path": {{SpecFiles.Quote(FashionData.Test(image: false))}}, "labels": "labels" } },
              "steps": [ {{steps}} ], "constraints": {{constraints}} }
            """);
        return StateDictCompressor.Run(trained.Path, spec, Path.Combine(Dir, outputName), output.WriteLine);
    }

    private static FashionMlpModule Restore(string artifact)
    {
        var module = new FashionMlpModule(128);
        StateDictLoader.LoadInto(module, artifact);
        return module;
    }
}

/// <summary>The app's module class as a user writes it: Linear → BatchNorm → ReLU → Linear, its fields named as the state dict's entries.</summary>
public sealed class FashionMlpModule : nn.Module<Tensor, Tensor>
{
    private readonly Linear fc1;
    private readonly BatchNorm1d bn;
    private readonly Linear fc2;

    public FashionMlpModule(int hidden, string name = "fashion_mlp")
        : base(name)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(hidden);
        fc1 = nn.Linear(784, hidden);
        bn = nn.BatchNorm1d(hidden);
        fc2 = nn.Linear(hidden, 10);
        RegisterComponents();
    }

    public override Tensor forward(Tensor input) => fc2.call(nn.functional.relu(bn.call(fc1.call(input))));
}

/// <summary>The same layers as <see cref="FashionMlpModule"/>, whose forward pass throws: an app's bug.</summary>
public sealed class BrokenForwardModule : nn.Module<Tensor, Tensor>
{
    private readonly Linear fc1;
    private readonly BatchNorm1d bn;
    private readonly Linear fc2;

    public BrokenForwardModule(int hidden)
        : base("broken")
    {
        fc1 = nn.Linear(784, hidden);
        bn = nn.BatchNorm1d(hidden);
        fc2 = nn.Linear(hidden, 10);
        RegisterComponents();
    }

    public override Tensor forward(Tensor input)
    {
        using var logits = fc2.call(nn.functional.relu(bn.call(fc1.call(input))));
        throw new InvalidOperationException("the app's own bug");
    }
}

/// <summary>A <see cref="FashionMlpModule"/>(128) trained briefly on the 2,048 calibration images, saved as a state dict once for the class.</summary>
public sealed class TrainedFashionMlp : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("compress-module-").FullName;

    public TrainedFashionMlp()
    {
        TorchRuntime.EnsureLoaded();
        var (x, y) = FashionModules.Load(FashionData.Calibration(false));
        manual_seed(11);
        using var module = new FashionMlpModule(128);
        FashionModules.Train(module, x, y);

        Path = System.IO.Path.Combine(_folder, "fashion_mlp.dat");
        module.save(Path);
        DenseAccuracy = Accuracy(module);
    }

    /// <summary>The state dict file.</summary>
    public string Path { get; }

    /// <summary>Its accuracy on the 10,000 test images.</summary>
    public double DenseAccuracy { get; }

    /// <summary>Top-1 accuracy on the 10,000 test images.</summary>
    public static double Accuracy(nn.Module<Tensor, Tensor> module)
    {
        var (x, y) = FashionModules.Load(FashionData.Test(false));
        return FashionModules.Accuracy(module, x, y);
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
