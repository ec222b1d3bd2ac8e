using Microsoft.CodeAnalysis;

namespace Compress.Generators.Tests;

public sealed class GeneratorTests
{
    private static readonly string SnapshotFolder = Path.Combine(Compress.Tests.Shared.Repository.Root, "tests", "Compress.Generators.Tests", "Snapshots");

    /// <summary>
    /// The generated text is compared with the committed snapshot; it must also compile with no warning. A missing
    /// snapshot is written and the test fails, so a new case is reviewed once; UPDATE_SNAPSHOTS=1 rewrites them all.
    /// </summary>
    [Theory]
    [MemberData(nameof(Manifests.Names), MemberType = typeof(Manifests))]
    public void Generated_wrappers_match_their_snapshots_and_compile_cleanly(string name)
    {
        var (result, output, diagnostics) = GeneratorHarness.Run(GeneratorHarness.Compilation(), ($"/obj/{name}.manifest.json", Manifests.ByName(name)));
        Assert.Empty(diagnostics);
        var generated = Assert.Single(Assert.Single(result.Results).GeneratedSources);
        var text = generated.SourceText.ToString();
        var snapshot = Path.Combine(SnapshotFolder, name + ".g.cs");
        if (!File.Exists(snapshot) || Environment.GetEnvironmentVariable("UPDATE_SNAPSHOTS") == "1")
        {
            File.WriteAllText(snapshot, text);
            Assert.Fail($"snapshot {snapshot} written: review it and run again");
        }

        Assert.Equal(File.ReadAllText(snapshot), text);
        var problems = output.GetDiagnostics().Where(d => d.Severity >= DiagnosticSeverity.Warning).ToList();
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    [Fact]
    public void An_unchanged_manifest_leaves_every_step_cached()
    {
        var manifest = ("/obj/a.manifest.json", Manifests.ByName("SymbolicDimensions"));
        var other = ("/obj/b.manifest.json", Manifests.ByName("OneInput"));
        var compilation = GeneratorHarness.Compilation();
        var driver = GeneratorHarness.Driver(manifest, other).RunGenerators(compilation);

        // A new edit of the user's code: the manifests did not change.
        var edited = compilation.AddSyntaxTrees(Microsoft.CodeAnalysis.CSharp.CSharpSyntaxTree.ParseText("class Added { }"));
        var rerun = driver.RunGenerators(edited).GetRunResult().Results.Single();
        foreach (var step in new[] { ModelWrapperGenerator.ManifestStep, ModelWrapperGenerator.WrapperStep })
        {
            var outputs = rerun.TrackedSteps[step].SelectMany(s => s.Outputs).ToList();
            Assert.Equal(2, outputs.Count);
            Assert.All(outputs, o => Assert.Equal(IncrementalStepRunReason.Cached, o.Reason));
        }

        Assert.All(rerun.TrackedOutputSteps.SelectMany(s => s.Value).SelectMany(s => s.Outputs),
            o => Assert.Contains(o.Reason, new[] { IncrementalStepRunReason.Cached, IncrementalStepRunReason.Unchanged }));
    }

    [Fact]
    public void A_changed_manifest_regenerates_only_its_wrapper()
    {
        var compilation = GeneratorHarness.Compilation();
        var first = GeneratorHarness.Run(compilation, ("/obj/a.manifest.json", Manifests.ByName("OneInput")), ("/obj/b.manifest.json", Manifests.ByName("Fp16")));
        var changed = GeneratorHarness.Run(compilation, ("/obj/a.manifest.json", Manifests.ByName("OneInput").Replace("784", "785", StringComparison.Ordinal)), ("/obj/b.manifest.json", Manifests.ByName("Fp16")));
        Assert.Contains("784L", first.Result.Results[0].GeneratedSources.Single(s => s.HintName.Contains("Classifier", StringComparison.Ordinal)).SourceText.ToString(), StringComparison.Ordinal);
        Assert.Contains("785L", changed.Result.Results[0].GeneratedSources.Single(s => s.HintName.Contains("Classifier", StringComparison.Ordinal)).SourceText.ToString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("{ \"version\": 1,\n  \"name\": 3 }", "CMP1001", 2, 11)]
    [InlineData("{ \"version\": 1, \"name\": \"A\", \"artifactPath\": \"a\", \"inputs\": [ { \"name\": \"x\", \"elementType\": \"complex64\", \"shape\": [1] } ], \"outputs\": [] }", "CMP1003", 1, 1)]
    public void Manifest_problems_are_reported_at_the_manifest(string text, string id, int line, int column)
    {
        var (result, _, _) = GeneratorHarness.Run(GeneratorHarness.Compilation(), ("/obj/m.manifest.json", text));
        var diagnostic = Assert.Single(result.Diagnostics);
        Assert.Equal(id, diagnostic.Id);
        var span = diagnostic.Location.GetLineSpan();
        Assert.Equal("/obj/m.manifest.json", span.Path);
        Assert.Equal((line - 1, column - 1), (span.StartLinePosition.Line, span.StartLinePosition.Character));
        Assert.Empty(result.Results[0].GeneratedSources);
    }

    [Fact]
    public void Two_manifests_with_one_class_name_are_a_collision()
    {
        var (result, _, _) = GeneratorHarness.Run(GeneratorHarness.Compilation(),
            ("/obj/a.manifest.json", Manifests.ByName("OneInput")), ("/obj/b.manifest.json", Manifests.ByName("OneInput")));
        var diagnostic = Assert.Single(result.Diagnostics);
        Assert.Equal("CMP1002", diagnostic.Id);
        Assert.Contains("App.Models.ClassifierModel", diagnostic.GetMessage(), StringComparison.Ordinal);
        Assert.Single(result.Results[0].GeneratedSources);
    }

    [Theory]
    [InlineData("OneInput", "CMP1004")]
    [InlineData("StateDict", "CMP1005")]
    public void Without_its_runtime_package_there_is_a_warning_and_no_wrapper(string manifest, string id)
    {
        var (result, output, _) = GeneratorHarness.Run(GeneratorHarness.Compilation(withRuntime: false), ("/obj/a.manifest.json", Manifests.ByName(manifest)));
        Assert.Equal(id, Assert.Single(result.Diagnostics).Id);
        Assert.Empty(result.Results[0].GeneratedSources);
        Assert.DoesNotContain(output.GetDiagnostics(), d => d.Severity == DiagnosticSeverity.Error);
    }

    [Fact]
    public void Files_without_the_manifest_metadata_are_ignored()
    {
        var driver = Microsoft.CodeAnalysis.CSharp.CSharpGeneratorDriver.Create(new ModelWrapperGenerator())
            .AddAdditionalTexts([new PlainText("/obj/a.manifest.json", Manifests.ByName("OneInput"))]);
        var result = driver.RunGenerators(GeneratorHarness.Compilation()).GetRunResult();
        Assert.Empty(result.Results[0].GeneratedSources);
        Assert.Empty(result.Diagnostics);
    }

    [Fact]
    public void Every_generator_diagnostic_has_a_help_page_and_a_release_entry()
    {
        var descriptors = typeof(Descriptors).GetFields().Select(f => (DiagnosticDescriptor)f.GetValue(null)!).ToList();
        var releases = File.ReadAllText(Path.Combine(Compress.Tests.Shared.Repository.Root, "src", "Compress.Generators", "AnalyzerReleases.Unshipped.md"));
        Assert.Equal(5, descriptors.Count);
        foreach (var descriptor in descriptors)
        {
            Assert.Matches("^CMP1[0-9]{3}$", descriptor.Id);
            var page = Path.Combine(Compress.Tests.Shared.Repository.Root, "docs", "diagnostics", descriptor.Id + ".md");
            Assert.True(File.Exists(page), $"{descriptor.Id} has no help page");
            Assert.StartsWith($"# {descriptor.Id}: ", File.ReadAllText(page), StringComparison.Ordinal);
            Assert.EndsWith($"/docs/diagnostics/{descriptor.Id}.md", descriptor.HelpLinkUri, StringComparison.Ordinal);
            Assert.Contains($"{descriptor.Id} | Compress.Build | {descriptor.DefaultSeverity} |", releases, StringComparison.Ordinal);
        }
    }

    private sealed class PlainText(string path, string text) : AdditionalText
    {
        public override string Path => path;

        public override Microsoft.CodeAnalysis.Text.SourceText GetText(CancellationToken cancellationToken = default) => Microsoft.CodeAnalysis.Text.SourceText.From(text);
    }
}
