using Microsoft.CodeAnalysis.CSharp.Testing;
using Microsoft.CodeAnalysis.Testing;

namespace Compress.Analyzers.Tests;

public sealed class SpecAnalyzerTests
{
    private const string EditorConfig = """
        root = true

        [*.compress.json]
        build_metadata.AdditionalFiles.CompressSpec = true
        """;

    [Fact]
    public Task An_unknown_key_is_underlined_where_it_is() => Verify("""
        {
          "steps": [
            { "quantize": { "weights": "int8", {|#0:"|}activation": "dynamic" } }
          ]
        }
        """, Expected(0, "CMP0101", "unknown key 'activation' in 'quantize'; did you mean 'activations'? (allowed: method, weights, activations, granularity, calibration, percentile, minActivationSqnrDb, biasCorrection, smoothing, blockSize, symmetric, form, actOrder, damping, maxLayerError, include, exclude, opTypes)"));

    [Fact]
    public Task A_value_of_the_wrong_type_is_underlined() => Verify("""
        { "steps": [ { "prune": { "sparsity": {|#0:"|}half" } } ] }
        """, Expected(0, "CMP0102", "'sparsity' must be a number, not a string (the one string it takes is \"auto\")"));

    [Fact]
    public Task An_unknown_method_lists_the_available_ones() => Verify("""
        { "steps": [ { "prune": { "method": {|#0:"|}lottery", "sparsity": 0.5 } } ] }
        """, Expected(0, "CMP0105", "unknown method 'lottery' (available: magnitude, obs, sparsegpt, woodfisher, snip, wanda)"));

    [Fact]
    public Task Broken_json_is_underlined_at_the_break() => Verify("""
        { "steps": [ { "prune": { "sparsity": 0.5 } } {|#0:"|}x" ] }
        """, Expected(0, "CMP0100", "',' or ']' expected"));

    [Fact]
    public Task A_valid_spec_is_not_flagged() => Verify("""
        {
          // comments are allowed
          "steps": [ { "prune": { "sparsity": 0.5 } }, { "quantize": { "weights": "int8", "activations": "dynamic" } } ],
          "data": { "evaluation": { "path": "data/test.npz", "labels": "labels" } },
          "constraints": { "maxAccuracyDrop": 0.01 }
        }
        """);

    [Fact]
    public async Task A_json_file_that_is_not_a_spec_is_not_flagged()
    {
        var test = new CSharpAnalyzerTest<SpecAnalyzer, DefaultVerifier> { ReferenceAssemblies = References.None };
        References.AddTo(test.TestState);
        test.TestState.Sources.Add("class C { }");
        test.TestState.AdditionalFiles.Add(("/0/appsettings.json", """{ "Logging": { "steps": 3 } }"""));
        test.TestState.AnalyzerConfigFiles.Add(("/.editorconfig", EditorConfig));
        await test.RunAsync();
    }

    private static DiagnosticResult Expected(int location, string engineCode, string message) =>
        new DiagnosticResult(Rules.SpecError).WithLocation(location).WithArguments(message, engineCode);

    private static async Task Verify(string spec, params DiagnosticResult[] expected)
    {
        var test = new CSharpAnalyzerTest<SpecAnalyzer, DefaultVerifier> { ReferenceAssemblies = References.None };
        References.AddTo(test.TestState);
        test.TestState.Sources.Add("class C { }");
        test.TestState.AdditionalFiles.Add(("/0/model.compress.json", spec));
        test.TestState.AnalyzerConfigFiles.Add(("/.editorconfig", EditorConfig));
        test.ExpectedDiagnostics.AddRange(expected);
        await test.RunAsync();
    }
}

/// <summary>
/// The running .NET's own assemblies as references: the test framework would otherwise download reference packs from
/// nuget.org, which CI cannot reach for every version.
/// </summary>
internal static class References
{
    public static readonly ReferenceAssemblies None = new("net10.0");

    private static readonly Microsoft.CodeAnalysis.MetadataReference[] Platform =
        Compress.Tests.Shared.Repository.PlatformAssemblies.Select(p => (Microsoft.CodeAnalysis.MetadataReference)Microsoft.CodeAnalysis.MetadataReference.CreateFromFile(p)).ToArray();

    public static void AddTo(SolutionState state) => state.AdditionalReferences.AddRange(Platform);
}
