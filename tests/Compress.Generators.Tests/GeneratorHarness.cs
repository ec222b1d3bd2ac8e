using System.Collections.Immutable;
using System.Reflection;
using Compress.Generators;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.Diagnostics;
using Microsoft.CodeAnalysis.Text;

namespace Compress.Generators.Tests;

/// <summary>Runs the generator over manifests the way the compiler does (AdditionalFiles with build metadata).</summary>
public static class GeneratorHarness
{
    public static readonly ImmutableArray<MetadataReference> References = BuildReferences();

    public static CSharpCompilation Compilation(bool withRuntime = true, string code = "class Program { static void Main() { } }") =>
        CSharpCompilation.Create("App", [CSharpSyntaxTree.ParseText(code, new CSharpParseOptions(LanguageVersion.Latest), path: "Program.cs")],
            withRuntime ? References : References.Where(r => !(r.Display ?? "").Contains("Compress.Runtime", StringComparison.Ordinal)),
            new CSharpCompilationOptions(OutputKind.ConsoleApplication, nullableContextOptions: NullableContextOptions.Enable));

    public static GeneratorDriver Driver(params (string Path, string Text)[] manifests) =>
        CSharpGeneratorDriver.Create([new ModelWrapperGenerator().AsSourceGenerator()],
            manifests.Select(m => (AdditionalText)new ManifestText(m.Path, m.Text)),
            new CSharpParseOptions(LanguageVersion.Latest),
            new Options(manifests.Select(m => m.Path).ToHashSet()),
            new GeneratorDriverOptions(IncrementalGeneratorOutputKind.None, trackIncrementalGeneratorSteps: true));

    public static (GeneratorDriverRunResult Result, Compilation Output, ImmutableArray<Diagnostic> Diagnostics) Run(CSharpCompilation compilation, params (string Path, string Text)[] manifests)
    {
        var driver = Driver(manifests).RunGeneratorsAndUpdateCompilation(compilation, out var output, out var diagnostics);
        return (driver.GetRunResult(), output, diagnostics);
    }

    /// <summary>Compiles <paramref name="compilation"/> and loads it; fails with the compiler's errors.</summary>
    public static Assembly Load(Compilation compilation)
    {
        using var stream = new MemoryStream();
        var emit = compilation.Emit(stream);
        Assert.True(emit.Success, string.Join("\n", emit.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error)));
        return Assembly.Load(stream.ToArray());
    }

    private static ImmutableArray<MetadataReference> BuildReferences()
    {
        var platform = Compress.Tests.Shared.Repository.PlatformAssemblies;
        var bin = AppContext.BaseDirectory;
        var extra = new[] { "Microsoft.ML.OnnxRuntime.dll", "System.Numerics.Tensors.dll", "Compress.Runtime.dll", "TorchSharp.dll", "Compress.Runtime.TorchSharp.dll" }.Select(f => Path.Combine(bin, f));
        return [.. platform.Concat(extra).Distinct().Select(p => (MetadataReference)MetadataReference.CreateFromFile(p))];
    }

    private sealed class ManifestText(string path, string text) : AdditionalText
    {
        public override string Path => path;

        public override SourceText GetText(CancellationToken cancellationToken = default) => SourceText.From(text);
    }

    private sealed class Options(HashSet<string> manifests) : AnalyzerConfigOptionsProvider
    {
        public override AnalyzerConfigOptions GlobalOptions => Empty.Instance;

        public override AnalyzerConfigOptions GetOptions(SyntaxTree tree) => Empty.Instance;

        public override AnalyzerConfigOptions GetOptions(AdditionalText textFile) => manifests.Contains(textFile.Path) ? Manifest.Instance : Empty.Instance;

        private sealed class Empty : AnalyzerConfigOptions
        {
            public static readonly Empty Instance = new();

            public override bool TryGetValue(string key, out string value)
            {
                value = "";
                return false;
            }
        }

        private sealed class Manifest : AnalyzerConfigOptions
        {
            public static readonly Manifest Instance = new();

            public override bool TryGetValue(string key, out string value)
            {
                value = "true";
                return key == "build_metadata.AdditionalFiles.CompressManifest";
            }
        }
    }
}
