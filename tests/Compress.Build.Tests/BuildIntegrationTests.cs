using System.Security.Cryptography;
using System.Text.Json;
using Compress.Runtime.StateDicts;
using Compress.Spec.Manifest;
using Xunit.Abstractions;

namespace Compress.Build.Tests;

/// <summary>
/// End to end: the packed Compress.Build package restored from a feed into fresh projects, built with the real
/// `dotnet` the way a user would. Assertions read files and the build log, never timings.
/// </summary>
[Collection(PackageCollection.Name)]
public sealed class BuildIntegrationTests(PackageFixture package, ITestOutputHelper output)
{
    /// <summary>
    /// Any CMP warning but CMP0088, which reports this machine's timings (the written model slower than its source):
    /// a build test never depends on how busy the machine is.
    /// </summary>
    private const string NoWarningExceptTiming = @"warning CMP(?!0088)";

    private const string Item = """    <CompressModel Include="Models/classifier.onnx" Spec="classifier.compress.json" />""";

    [Fact]
    public void Build_and_publish_ship_the_compressed_model_and_report_in_place_of_the_original()
    {
        // The original is also listed for copying, as many projects do; it must not reach bin/ beside the artifact.
        var project = package.NewProject(package.NewWorkspace(), "App", Item + """

                <None Update="Models/classifier.onnx" CopyToOutputDirectory="PreserveNewest" CopyToPublishDirectory="PreserveNewest" />
            """, package.Spec());
        var build = Run(project, "build", "-v:n");
        Assert.Equal(0, build.ExitCode);
        Assert.True(build.Compressed);

        var original = File.ReadAllBytes(PackageFixture.MlpModel);
        var artifact = Path.Combine(project, "obj", "Debug", "net10.0", "compress", "Models", "classifier.onnx");
        foreach (var folder in new[] { Path.Combine(project, "bin", "Debug", "net10.0"), Path.Combine(project, "out") })
        {
            if (folder.EndsWith("out", StringComparison.Ordinal))
            {
                Assert.Equal(0, Run(project, "publish", "-c", "Debug", "-o", folder).ExitCode);
            }

            var shipped = Path.Combine(folder, "Models", "classifier.onnx");
            Assert.Equal(Sha(artifact), Sha(shipped));
            Assert.True(new FileInfo(shipped).Length < original.Length * 0.3, $"{shipped}: {new FileInfo(shipped).Length} bytes");
            Assert.Equal(["classifier.compress-report.html", "classifier.compress-report.json", "classifier.compress-report.md", "classifier.onnx"],
                Directory.GetFiles(Path.Combine(folder, "Models")).Select(Path.GetFileName).Order(StringComparer.Ordinal));
            using var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "Models", "classifier.compress-report.json")));
            Assert.True(report.RootElement.GetProperty("metrics").GetProperty("compressedAccuracy").GetDouble() > 0.85);
        }

        var manifest = ManifestJson.Read(File.ReadAllText(Path.ChangeExtension(artifact, ".manifest.json")), "manifest");
        Assert.True(manifest.Compressed);
        Assert.Equal("Classifier", manifest.Name);
        Assert.Equal("App", manifest.Namespace);
        Assert.Equal("Models/classifier.onnx", manifest.ArtifactPath);
        Assert.Equal(Sha(artifact), manifest.ArtifactSha256, ignoreCase: true);
        Assert.Contains(manifest.Operators, o => o.Op == "DynamicQuantizeMatMul" && o.ElementTypes.Contains("int8"));
    }

    [Fact]
    public void Only_changes_to_model_spec_data_or_metadata_recompress()
    {
        var project = package.NewProject(package.NewWorkspace(), "App", Item, package.Spec());
        var spec = Path.Combine(project, "classifier.compress.json");
        Assert.True(Build(project).Compressed);

        var second = Build(project);
        Assert.False(second.Compressed, second.Output);
        Assert.True(second.UpToDate, second.Output);

        Touch(project, Path.Combine(project, "Program.cs"));
        var afterCode = Build(project);
        Assert.False(afterCode.Compressed, "an unrelated .cs change recompressed");
        Assert.Contains("App -> ", afterCode.Output, StringComparison.Ordinal);

        Touch(project, spec);
        var afterSpec = Build(project);
        Assert.True(afterSpec.Compressed, "touching the spec did not recompress");
        Assert.Contains("classifier.compress.json changed", afterSpec.Output, StringComparison.Ordinal);

        Touch(project, Path.Combine(package.Data, "test.npz"));
        var afterData = Build(project);
        Assert.True(afterData.Compressed, "touching the evaluation data did not recompress");
        Assert.Contains("test.npz changed", afterData.Output, StringComparison.Ordinal);

        Touch(project, Path.Combine(project, "Models", "classifier.onnx"));
        var afterModel = Build(project);
        Assert.True(afterModel.Compressed, "touching the model did not recompress");
        Assert.Contains("classifier.onnx changed", afterModel.Output, StringComparison.Ordinal);
        var last = Build(project);
        Assert.False(last.Compressed, last.Output);
    }

    [Fact]
    public void Inline_metadata_means_the_same_as_the_spec_file_and_a_change_of_it_recompresses()
    {
        var workspace = package.NewWorkspace();
        var withSpec = package.NewProject(workspace, "WithSpec", Item, """{ "steps": [ { "quantize": { "weights": "int8", "activations": "dynamic" } } ] }""");
        var inline = package.NewProject(workspace, "Inline", """    <CompressModel Include="Models/classifier.onnx" Quantize="$(Quantize)" />""");
        Assert.Equal(0, Build(withSpec).ExitCode);
        Assert.Equal(0, Build(inline, "-p:Quantize=int8-dynamic").ExitCode);
        string Artifact(string p) => Path.Combine(p, "bin", "Debug", "net10.0", "Models", "classifier.onnx");
        Assert.Equal(Sha(Artifact(withSpec)), Sha(Artifact(inline)));

        Assert.False(Build(inline, "-p:Quantize=int8-dynamic").Compressed);
        var fp16 = Build(inline, "-p:Quantize=fp16");
        Assert.True(fp16.Compressed, "changing inline metadata did not recompress");
        Assert.NotEqual(Sha(Artifact(withSpec)), Sha(Artifact(inline)));

        var wrong = Build(inline, "-p:Quantize=int9");
        Assert.NotEqual(0, wrong.ExitCode);
        Assert.Matches(@"Inline\.csproj : error CMP0109: CompressModel 'Models/classifier.onnx': Quantize=""int9"" is not one of", wrong.Output);
    }

    [Fact]
    public void A_bad_spec_fails_the_build_at_its_file_line_and_column_and_ships_nothing()
    {
        var project = package.NewProject(package.NewWorkspace(), "App", Item, """
            {
              "steps": [
                { "quantize": { "weights": "int8", "activation": "dynamic" } }
              ]
            }
            """);
        var build = Build(project);
        Assert.NotEqual(0, build.ExitCode);
        var spec = Path.Combine(project, "classifier.compress.json");
        Assert.Contains($"{spec}(3,40): error CMP0101:", build.Output, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(project, "bin", "Debug", "net10.0", "Models", "classifier.onnx")));
    }

    [Fact]
    public void An_unmet_accuracy_constraint_fails_the_build_with_the_measured_figures()
    {
        var project = package.NewProject(package.NewWorkspace(), "App", Item,
            package.Spec("""{ "prune": { "sparsity": 0.97, "maxLayerSparsity": 0.99 } }, """, """{ "maxAccuracyDrop": 0.01 }"""));
        var build = Build(project);
        Assert.NotEqual(0, build.ExitCode);
        Assert.Matches(@"classifier\.onnx : error CMP0030: maxAccuracyDrop 0\.01 not met \(measured 0\.\d+\)", build.Output);
        Assert.False(File.Exists(Path.Combine(project, "obj", "Debug", "net10.0", "compress", "Models", "classifier.onnx")));
    }

    [Fact]
    public void A_condition_gives_each_configuration_its_own_spec()
    {
        var project = package.NewProject(package.NewWorkspace(), "App", """
                <CompressModel Include="Models/classifier.onnx" Spec="debug.compress.json" Condition="'$(Configuration)' == 'Debug'" />
                <CompressModel Include="Models/classifier.onnx" Spec="classifier.compress.json" Condition="'$(Configuration)' == 'Release'" />
            """, package.Spec());
        File.WriteAllText(Path.Combine(project, "debug.compress.json"), """{ "steps": [ { "quantize": { "weights": "fp16" } } ] }""");
        Assert.Equal(0, Build(project).ExitCode);
        Assert.Equal(0, Build(project, "-c", "Release").ExitCode);
        string Steps(string configuration)
        {
            using var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(project, "bin", configuration, "net10.0", "Models", "classifier.compress-report.json")));
            return string.Join(",", report.RootElement.GetProperty("steps").EnumerateArray().Select(e => e.GetString()));
        }

        Assert.Equal("quantize/fp16", Steps("Debug"));
        Assert.Equal("quantize/dynamic", Steps("Release"));
    }

    [Fact]
    public void A_wrong_tool_path_override_is_a_clear_error()
    {
        var project = package.NewProject(package.NewWorkspace(), "App", Item, package.Spec());
        var build = Build(project, "-p:CompressModel_ToolPath=/nonexistent/compress.dll");
        Assert.NotEqual(0, build.ExitCode);
        Assert.Contains("App.csproj : error CMP0112: the compress tool was not found at '/nonexistent/compress.dll'", build.Output, StringComparison.Ordinal);
    }

    [Fact]
    public void The_generated_wrapper_runs_the_compressed_model_in_the_app()
    {
        var project = package.NewProject(package.NewWorkspace(), "App", Item + $"""

                <PackageReference Include="Compress.Runtime" Version="{package.Version}" />
            """, package.Spec(), """
            using App;
            var pixels = new float[2 * 784];
            for (var i = 0; i < pixels.Length; i++) { pixels[i] = (i * 37 % 255) / 255f; }
            using var model = ClassifierModel.Load();
            var logits = model.Run(pixels).Logits;
            System.Console.WriteLine($"shape [{string.Join(",", logits.Shape)}] first {logits.Data[0]:R}");
            """);
        var run = Run(project, "run", "-v:n");
        Assert.Equal(0, run.ExitCode);
        Assert.True(run.Compressed);
        Assert.Contains("shape [2,10] first ", run.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("CS8032", run.Output, StringComparison.Ordinal); // the generator loaded in this compiler
        Assert.DoesNotMatch(NoWarningExceptTiming, run.Output);
    }

    /// <summary>
    /// Data-free int8 (issue 19): the Fashion CNN with a spec that names no data is compressed, the build succeeds, and
    /// its log carries warning CMP0080 at the spec — the result was not checked on real data — as does the report.
    /// </summary>
    [Fact]
    public void A_data_free_spec_builds_with_the_not_checked_on_real_data_warning()
    {
        var project = package.NewProject(package.NewWorkspace(), "App", Item, """{ "steps": [ { "quantize": { "weights": "int8", "activations": "dynamic" } } ] }""");
        File.Copy(Path.Combine(PackageFixture.RepoRoot, "models", "fashion_cnn.onnx"), Path.Combine(project, "Models", "classifier.onnx"), overwrite: true);
        var build = Run(project, "build", "-v:n");
        Assert.Equal(0, build.ExitCode);
        Assert.True(build.Compressed);
        Assert.Matches(@"classifier\.compress\.json ?: warning CMP0080: the compressed model was not checked on real data: the spec names no data", build.Output);
        var report = File.ReadAllText(Path.Combine(project, "bin", "Debug", "net10.0", "Models", "classifier.compress-report.json"));
        Assert.Contains("CMP0080", report, StringComparison.Ordinal);
    }

    /// <summary>
    /// A spec ending in a <c>pack</c> step: ResolveCompressModels names the artifact <c>classifier.cpack</c>, the build
    /// ships it (and no <c>.onnx</c>) with its reports, the manifest and the generated wrapper point at it, the
    /// wrapper's <c>Load</c> opens it (Compress.Runtime expands it in memory), and a second build compresses nothing.
    /// </summary>
    [Fact]
    public void A_packing_spec_ships_a_cpack_that_the_wrapper_loads_and_a_rebuild_is_a_no_op()
    {
        var project = package.NewProject(package.NewWorkspace(), "App", Item + $"""

                <PackageReference Include="Compress.Runtime" Version="{package.Version}" />
            """, $$"""
            {
              "data": { "evaluation": { "path": {{PackageFixture.Quote(Path.Combine(package.Data, "test.npz"))}}, "labels": "labels" } },
              "steps": [ { "pack": { "bits": 5 } } ],
              "constraints": { "maxAccuracyDrop": 0.02 }
            }
            """, """
            using App;
            var pixels = new float[2 * 784];
            for (var i = 0; i < pixels.Length; i++) { pixels[i] = (i * 37 % 255) / 255f; }
            using var model = ClassifierModel.Load();
            var logits = model.Run(pixels).Logits;
            System.Console.WriteLine($"{ClassifierModel.ArtifactPath}: shape [{string.Join(",", logits.Shape)}] finite {logits.Data.ToArray().All(float.IsFinite)}");
            """);
        var run = Run(project, "run", "-v:n");
        Assert.Equal(0, run.ExitCode);
        Assert.True(run.Compressed);
        Assert.Contains("Models/classifier.cpack: shape [2,10] finite True", run.Output, StringComparison.Ordinal);
        Assert.DoesNotMatch(NoWarningExceptTiming, run.Output);

        var artifact = Path.Combine(project, "obj", "Debug", "net10.0", "compress", "Models", "classifier.cpack");
        var bin = Path.Combine(project, "bin", "Debug", "net10.0", "Models");
        Assert.Equal(["classifier.compress-report.html", "classifier.compress-report.json", "classifier.compress-report.md", "classifier.cpack"],
            Directory.GetFiles(bin).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        var shipped = Path.Combine(bin, "classifier.cpack");
        Assert.Equal(Sha(artifact), Sha(shipped));
        Assert.True(Compress.Runtime.Packing.PackedModel.IsPackedFile(shipped));
        Assert.True(new FileInfo(shipped).Length < new FileInfo(PackageFixture.MlpModel).Length * 0.15, $"{new FileInfo(shipped).Length} bytes");
        var manifest = ManifestJson.Read(File.ReadAllText(Path.ChangeExtension(artifact, ".manifest.json")), "manifest");
        Assert.True(manifest.Compressed);
        Assert.Equal("Classifier", manifest.Name);
        Assert.Equal("Models/classifier.cpack", manifest.ArtifactPath);
        Assert.Equal(Sha(artifact), manifest.ArtifactSha256, ignoreCase: true);
        Assert.Equal("input", Assert.Single(manifest.Inputs).Name); // the signature of the expanded model

        var again = Build(project);
        Assert.Equal(0, again.ExitCode);
        Assert.False(again.Compressed, again.Output);
        Assert.True(again.UpToDate, again.Output);
        Assert.Equal(Sha(artifact), Sha(shipped));
    }

    /// <summary>
    /// Format="torchsharp": a state dict (as TorchSharp's Module.save writes it) listed with inline metadata is
    /// compressed by the build and shipped; the generated loader class compiles against Compress.Runtime.TorchSharp
    /// (restoring into a module is shown by the Core tests, which can load libtorch); without that package, CMP1005.
    /// </summary>
    [Fact]
    public void A_torchsharp_state_dict_is_compressed_and_gets_a_LoadInto_loader()
    {
        var workspace = package.NewWorkspace();
        var items = $"""
                <CompressModel Include="Models/classifier.dat" Quantize="int8-weights" Sparsity="0.5" />
                <PackageReference Include="Compress.Runtime.TorchSharp" Version="{package.Version}" />
            """;
        var project = package.NewProject(workspace, "App", items, program: """
            System.Action<TorchSharp.torch.nn.Module, string?> load = App.ClassifierModel.LoadInto;
            System.Console.WriteLine($"loader for {App.ClassifierModel.ArtifactPath}: {load.Method.Name}");
            """);
        var random = new Random(5);
        float[] Values(int count) => Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray();
        StateDictTensor Tensor(string name, params long[] shape)
        {
            var values = Values((int)shape.Aggregate(1L, (a, b) => a * b));
            return new StateDictTensor(name, StateDictElementType.Float32, shape, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray());
        }

        var source = Path.Combine(project, "Models", "classifier.dat");
        StateDictFile.Write(source, [Tensor("fc1.weight", 64, 784), Tensor("fc1.bias", 64), Tensor("fc2.weight", 10, 64), Tensor("fc2.bias", 10)]);

        var run = Run(project, "run", "-v:n");
        Assert.Equal(0, run.ExitCode);
        Assert.True(run.Compressed);
        Assert.Contains("loader for Models/classifier.dat: LoadInto", run.Output, StringComparison.Ordinal);
        // Inline metadata names no data: the one warning is that the result was not checked on real data.
        Assert.All(run.Output.Split('\n').Where(l => l.Contains("warning CMP", StringComparison.Ordinal)), l => Assert.Contains("warning CMP0080", l, StringComparison.Ordinal));
        var artifact = Path.Combine(project, "bin", "Debug", "net10.0", "Models", "classifier.dat");
        Assert.True(new FileInfo(artifact).Length < new FileInfo(source).Length * 0.2, $"{new FileInfo(artifact).Length} of {new FileInfo(source).Length} bytes");
        var decoded = CompressedStateDict.Read(artifact);
        Assert.Equal(["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"], decoded.Select(t => t.Name));
        Assert.Equal([64L, 784L], decoded[0].Shape);

        File.WriteAllText(Path.Combine(project, "App.csproj"), File.ReadAllText(Path.Combine(project, "App.csproj"))
            .Replace($"""<PackageReference Include="Compress.Runtime.TorchSharp" Version="{package.Version}" />""", "", StringComparison.Ordinal));
        File.WriteAllText(Path.Combine(project, "Program.cs"), "System.Console.WriteLine(\"no loader\");\n");
        var without = Run(project, "build", "-v:n");
        Assert.Equal(0, without.ExitCode);
        Assert.Contains("warning CMP1005", without.Output, StringComparison.Ordinal);
    }

    /// <summary>
    /// A state dict with the app's module class, defined in a class library the app references: the spec names the type
    /// ('module'), the build finds the library among the project's references, runs the state dict in the module so the
    /// result is measured on the test data and distilled after pruning, and ships it; a rebuild is a no-op, and a change
    /// of the library recompresses.
    /// </summary>
    [Fact]
    public void A_state_dict_runs_in_the_module_class_of_a_referenced_library_to_be_distilled_and_measured()
    {
        var workspace = package.NewWorkspace();
        var library = Path.Combine(workspace, "Models");
        Directory.CreateDirectory(library);
        File.WriteAllText(Path.Combine(library, "Models.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <TargetFramework>net10.0</TargetFramework>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="Compress.Runtime.TorchSharp" Version="{package.Version}" />
              </ItemGroup>
            </Project>
            """);
        var moduleSource = Path.Combine(library, "FashionMlp.cs");
        File.WriteAllText(moduleSource, """
            using TorchSharp.Modules;
            using static TorchSharp.torch;

            namespace Models;

            /// <summary>The app's classifier: 784 → 300 → 100 → 10 with ReLU.</summary>
            public sealed class FashionMlp : nn.Module<Tensor, Tensor>
            {
                private readonly Linear fc1 = nn.Linear(784, 300);
                private readonly Linear fc2 = nn.Linear(300, 100);
                private readonly Linear fc3 = nn.Linear(100, 10);

                public FashionMlp(string name = "fashion_mlp") : base(name) => RegisterComponents();

                public override Tensor forward(Tensor input) => fc3.call(nn.functional.relu(fc2.call(nn.functional.relu(fc1.call(input)))));
            }
            """);
        var items = $"""
                <CompressModel Include="Models/classifier.dat" Spec="classifier.compress.json" />
                <ProjectReference Include="../Models/Models.csproj" />
                <PackageReference Include="Compress.Runtime.TorchSharp" Version="{package.Version}" />
            """;
        var project = package.NewProject(workspace, "App", items, program: """
            System.Action<TorchSharp.torch.nn.Module, string?> load = App.ClassifierModel.LoadInto;
            System.Console.WriteLine($"{typeof(Models.FashionMlp).Name} loads {App.ClassifierModel.ArtifactPath} by {load.Method.Name}");
            """);
        // The sample MLP's trained weights (PyTorch's Linear layout, the same names) as the state dict the app ships.
        var onnx = Compress.Core.Onnx.Proto.ModelProto.Parser.ParseFrom(File.ReadAllBytes(PackageFixture.MlpModel));
        var source = Path.Combine(project, "Models", "classifier.dat");
        StateDictFile.Write(source, onnx.Graph.Initializer.Select(t => new StateDictTensor(t.Name, StateDictElementType.Float32, [.. t.Dims], t.RawData.ToByteArray())).ToList());
        File.WriteAllText(Path.Combine(project, "classifier.compress.json"), $$"""
            {
              "module": { "type": "Models.FashionMlp, Models" },
              "data": { "calibration": { "path": {{PackageFixture.Quote(Path.Combine(package.Data, "calibration.npz"))}} },
                        "evaluation": { "path": {{PackageFixture.Quote(Path.Combine(package.Data, "test.npz"))}}, "labels": "labels" } },
              "steps": [ { "prune": { "sparsity": 0.85 } }, { "finetune": { "steps": 200, "batchSize": 64 } } ],
              "constraints": { "maxAccuracyDrop": 0.05 }
            }
            """);

        var run = Run(project, "run", "-v:n");
        Assert.Equal(0, run.ExitCode);
        Assert.True(run.Compressed);
        Assert.Contains("FashionMlp loads Models/classifier.dat by LoadInto", run.Output, StringComparison.Ordinal);
        Assert.DoesNotMatch(NoWarningExceptTiming, run.Output);
        var bin = Path.Combine(project, "bin", "Debug", "net10.0", "Models");
        using (var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(bin, "classifier.compress-report.json"))))
        {
            var metrics = report.RootElement.GetProperty("metrics");
            output.WriteLine($"accuracy {metrics.GetProperty("originalAccuracy").GetDouble():P2} → {metrics.GetProperty("compressedAccuracy").GetDouble():P2}, {report.RootElement.GetProperty("size").GetProperty("ratio").GetDouble():0.000}×");
            Assert.True(metrics.GetProperty("originalAccuracy").GetDouble() > 0.85);
            Assert.True(metrics.GetProperty("accuracyDrop").GetDouble() <= 0.05);
            Assert.Contains(report.RootElement.GetProperty("notes").EnumerateArray(), n => n.GetString()!.StartsWith("finetune: distilled", StringComparison.Ordinal));
        }

        Assert.True(new FileInfo(Path.Combine(bin, "classifier.dat")).Length < new FileInfo(source).Length * 0.2);
        var again = Run(project, "build", "-v:n");
        Assert.True(again.UpToDate, again.Output);

        File.AppendAllText(moduleSource, "// a change of the module's library\n");
        var changed = Run(project, "build", "-v:n");
        Assert.Equal(0, changed.ExitCode);
        Assert.True(changed.Compressed, changed.Output);
        Assert.Contains("Models.dll changed", changed.Output, StringComparison.Ordinal);
    }

    /// <summary>
    /// Format="torchscript": the PyTorch-made fixture, int8 weight-only through a CompressModel item with an accuracy
    /// constraint on normalised test images; the artifact (TorchScript, deflated) ships and the wrapper compiles.
    /// </summary>
    [Theory]
    [InlineData("ts_mlp", """{ "quantize": { "weights": "int8", "activations": "none" } }""", 0.005, 0.30)]
    [InlineData("ts_cnn", """{ "prune": { "method": "magnitude", "sparsity": 0.5 } }""", 0.01, 0.60)]
    public void A_torchscript_fixture_is_compressed_by_the_build_within_its_constraint(string name, string step, double maxDrop, double maxRatio)
    {
        var data = Path.Combine(package.Root, "normalized-test.npz");
        Compress.Core.Data.FashionMnist.WriteNpz(data, test: true, [1, 28, 28], 2000, 0.2860f, 0.3530f);
        var workspace = package.NewWorkspace();
        var items = $"""
                <CompressModel Include="Models/{name}.pt" Spec="ts.compress.json" />
                <PackageReference Include="Compress.Runtime.TorchSharp" Version="{package.Version}" />
            """;
        var wrapper = name == "ts_mlp" ? "TsMlpModel" : "TsCnnModel";
        var project = package.NewProject(workspace, "App", items, program: $$"""
            System.Func<string?, App.{{wrapper}}> load = App.{{wrapper}}.Load;
            System.Console.WriteLine($"wrapper for {App.{{wrapper}}.ArtifactPath}: {load.Method.Name}");
            """);
        var fixture = Path.Combine(PackageFixture.RepoRoot, "tests", "fixtures", "torchscript", name + ".pt");
        File.Copy(fixture, Path.Combine(project, "Models", name + ".pt"));
        File.WriteAllText(Path.Combine(project, "ts.compress.json"), $$"""
            {
              "data": { "evaluation": { "path": {{PackageFixture.Quote(data)}}, "labels": "labels" } },
              "steps": [ {{step}} ],
              "constraints": { "maxAccuracyDrop": {{maxDrop}} }
            }
            """);

        var run = Run(project, "run", "-v:n");
        Assert.Equal(0, run.ExitCode);
        Assert.True(run.Compressed);
        Assert.Contains($"wrapper for Models/{name}.pt: Load", run.Output, StringComparison.Ordinal);
        Assert.DoesNotMatch(NoWarningExceptTiming, run.Output);
        var bin = Path.Combine(project, "bin", "Debug", "net10.0", "Models");
        Assert.True(new FileInfo(Path.Combine(bin, name + ".pt")).Length <= new FileInfo(fixture).Length * maxRatio);
        using var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(bin, name + ".compress-report.json")));
        var metrics = report.RootElement.GetProperty("metrics");
        output.WriteLine($"accuracy {metrics.GetProperty("originalAccuracy").GetDouble():P2} → {metrics.GetProperty("compressedAccuracy").GetDouble():P2}, {report.RootElement.GetProperty("size").GetProperty("ratio").GetDouble():0.000}×");
        Assert.True(metrics.GetProperty("accuracyDrop").GetDouble() <= maxDrop);
    }

    [Fact]
    public void Passing_float_data_to_an_fp16_input_is_flagged_in_the_build()
    {
        var project = package.NewProject(package.NewWorkspace(), "App", $"""
                <CompressModel Include="Models/half.onnx" Quantize="fp16" />
                <PackageReference Include="Compress.Runtime" Version="{package.Version}" />
            """, null, """
            var pixels = new float[8];
            using var model = App.HalfModel.Load();
            var result = model.Run(pixels);
            """);
        new Compress.Core.Onnx.GraphBuilder("half")
            .Input("x", Compress.Core.Onnx.Proto.TensorProto.Types.DataType.Float16, "n", 8)
            .Node("Identity", ["x"], ["y"], "identity")
            .Output("y", Compress.Core.Onnx.Proto.TensorProto.Types.DataType.Float16, "n", 8)
            .Build().Save(Path.Combine(project, "Models", "half.onnx"));
        var build = Build(project);
        Assert.NotEqual(0, build.ExitCode); // the compiler's conversion error stands too
        var program = Path.Combine(project, "Program.cs");
        Assert.Contains($"{program}(3,24): warning CMP2002: Input 'x' of HalfModel takes float16 (Half) in the compressed model, but the argument holds float32", build.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("CS8032", build.Output, StringComparison.Ordinal);
    }

    [Fact]
    public void Clean_removes_the_compressed_outputs()
    {
        var project = package.NewProject(package.NewWorkspace(), "App", Item, package.Spec());
        Assert.Equal(0, Build(project).ExitCode);
        var shipped = Path.Combine(project, "bin", "Debug", "net10.0", "Models", "classifier.onnx");
        var compressFolder = Path.Combine(project, "obj", "Debug", "net10.0", "compress");
        Assert.True(File.Exists(shipped));
        Assert.Equal(0, Run(project, "clean").ExitCode);
        Assert.False(File.Exists(shipped));
        Assert.False(File.Exists(Path.ChangeExtension(shipped, null) + ".compress-report.json"));
        Assert.False(Directory.Exists(compressFolder));
    }

    [Fact]
    public void Disabled_compression_ships_nothing_and_runs_nothing()
    {
        var project = package.NewProject(package.NewWorkspace(), "App", Item, package.Spec());
        var build = Build(project, "-p:CompressModelsEnabled=false");
        Assert.Equal(0, build.ExitCode);
        Assert.False(build.Compressed);
        Assert.False(Directory.Exists(Path.Combine(project, "obj", "Debug", "net10.0", "compress")));
    }

    [Fact]
    public void A_design_time_build_writes_the_manifest_from_the_signature_and_never_compresses()
    {
        var project = package.NewProject(package.NewWorkspace(), "App", Item, package.Spec());
        Assert.Equal(0, Run(project, "restore").ExitCode);
        var build = Run(project, "msbuild", "-t:CompileDesignTime", "-p:DesignTimeBuild=true", "-p:SkipCompilerExecution=true", "-v:n");
        if (build.Output.Contains("MSB4057", StringComparison.Ordinal))
        {
            // No CompileDesignTime target outside Visual Studio's targets: the design-time flag on Compile does the same.
            build = Run(project, "msbuild", "-t:Compile", "-p:DesignTimeBuild=true", "-p:SkipCompilerExecution=true", "-v:n");
        }

        Assert.Equal(0, build.ExitCode);
        Assert.False(build.Compressed, build.Output);
        var folder = Path.Combine(project, "obj", "Debug", "net10.0", "compress", "Models");
        Assert.False(File.Exists(Path.Combine(folder, "classifier.onnx")));
        var manifest = ManifestJson.Read(File.ReadAllText(Path.Combine(folder, "classifier.manifest.json")), "manifest");
        Assert.False(manifest.Compressed);
        Assert.Equal("input", Assert.Single(manifest.Inputs).Name);
        Assert.Equal("float", manifest.Inputs[0].ElementType);
        Assert.Equal("batch", manifest.Inputs[0].Shape![0].Symbol);
        Assert.Equal(784, manifest.Inputs[0].Shape![1].Value);
        Assert.Contains(manifest.Operators, o => o.Op == "Gemm");
    }

    [Fact]
    public void Two_projects_compressing_the_same_model_in_one_parallel_build_do_not_collide()
    {
        var workspace = package.NewWorkspace();
        var shared = Path.Combine(workspace, "shared.onnx");
        File.Copy(PackageFixture.MlpModel, shared);
        File.WriteAllText(Path.Combine(workspace, "shared.compress.json"), package.Spec());
        var sharedItem = $"""    <CompressModel Include="{shared}" Spec="../shared.compress.json" />""";
        var a = package.NewProject(workspace, "A", sharedItem);
        var b = package.NewProject(workspace, "B", sharedItem);
        File.WriteAllText(Path.Combine(workspace, "all.slnx"), """
            <Solution>
              <Project Path="A/A.csproj" />
              <Project Path="B/B.csproj" />
            </Solution>
            """);
        var before = Sha(shared);
        var build = Run(workspace, "build", "all.slnx", "-m:2", "-v:n");
        Assert.Equal(0, build.ExitCode);
        Assert.Equal(2, build.Output.Split("Compress.Build: compressing").Length - 1);
        var artifacts = new[] { a, b }.Select(p => Path.Combine(p, "bin", "Debug", "net10.0", "shared.onnx")).ToList();
        Assert.Equal(Sha(artifacts[0]), Sha(artifacts[1])); // deterministic, and neither half-written
        Assert.Equal(before, Sha(shared));
        Assert.Empty(Directory.GetFiles(workspace, "*.tmp", SearchOption.AllDirectories));
    }

    [Fact]
    public void The_package_brings_the_exact_packages_the_cli_was_built_against()
    {
        var project = package.NewProject(package.NewWorkspace(), "App", Item, package.Spec());
        Assert.Equal(0, Run(project, "restore").ExitCode);
        using var assets = JsonDocument.Parse(File.ReadAllText(Path.Combine(project, "obj", "project.assets.json")));
        var restored = assets.RootElement.GetProperty("libraries").EnumerateObject().Select(p => p.Name).ToHashSet(StringComparer.OrdinalIgnoreCase);
        var tools = Path.Combine(PackageFixture.PackagesFolder, "compress.build", package.Version.ToLowerInvariant(), "tools", "net10.0");
        using var deps = JsonDocument.Parse(File.ReadAllText(Path.Combine(tools, "compress.deps.json")));
        var needed = deps.RootElement.GetProperty("libraries").EnumerateObject()
            .Where(p => p.Value.GetProperty("type").GetString() == "package").Select(p => p.Name).ToList();
        Assert.NotEmpty(needed);
        Assert.All(needed, n => Assert.Contains(n, restored));

        // Nothing of them reaches the app: no ONNX Runtime or TorchSharp assembly is referenced or copied.
        Assert.Equal(0, Build(project).ExitCode);
        var bin = Path.Combine(project, "bin", "Debug", "net10.0");
        Assert.Empty(Directory.GetFiles(bin, "*Torch*", SearchOption.AllDirectories));
        Assert.Empty(Directory.GetFiles(bin, "*onnxruntime*", SearchOption.AllDirectories));
        Assert.False(Directory.Exists(Path.Combine(bin, "runtimes")));
    }

    private DotnetResult Build(string project, params string[] extra) => Run(project, ["build", "-v:n", .. extra]);

    private DotnetResult Run(string folder, params string[] args)
    {
        var result = PackageFixture.Dotnet(folder, args);
        output.WriteLine($"$ dotnet {string.Join(' ', args)}  (exit {result.ExitCode})");
        output.WriteLine(string.Join('\n', result.Output.Split('\n').Where(l => l.Contains("Compress.Build:", StringComparison.Ordinal) || l.Contains(": error ", StringComparison.Ordinal) || l.Contains(": warning CMP", StringComparison.Ordinal))));
        return result;
    }

    private static string Sha(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)));

    /// <summary>
    /// Makes <paramref name="changed"/> the one input newer than what <paramref name="project"/>'s builds wrote, by
    /// setting every write time involved rather than trusting the clock: the project's sources, the data files and
    /// the package's tool assemblies (inputs of the up-to-date check too) go 30 s back, everything under obj/ and bin/
    /// 20 s back, <paramref name="changed"/> 10 s back. Nothing is set in the future (a future input would still be
    /// newer than the outputs the next build writes), so that build leaves every output newer than every input again.
    /// 10 s steps hold on file systems with coarse timestamps too.
    /// </summary>
    private void Touch(string project, string changed)
    {
        var inputs = DateTime.UtcNow.AddSeconds(-30);
        var tools = Path.Combine(PackageFixture.PackagesFolder, "compress.build", package.Version.ToLowerInvariant(), "tools");
        var data = Directory.EnumerateFiles(package.Data);
        foreach (var file in Directory.EnumerateFiles(project, "*", SearchOption.AllDirectories).Concat(data).Concat(Directory.EnumerateFiles(tools, "*", SearchOption.AllDirectories)))
        {
            var relative = Path.GetRelativePath(project, file).Replace('\\', '/');
            var built = relative.StartsWith("obj/", StringComparison.Ordinal) || relative.StartsWith("bin/", StringComparison.Ordinal);
            File.SetLastWriteTimeUtc(file, built ? inputs.AddSeconds(10) : inputs);
        }

        File.SetLastWriteTimeUtc(changed, inputs.AddSeconds(20));
    }
}
