using Microsoft.CodeAnalysis.CSharp.Testing;
using Microsoft.CodeAnalysis.Testing;
using Compress.Analyzers.CodeFixes;
using Microsoft.CodeAnalysis.Diagnostics;

namespace Compress.Analyzers.Tests;

public sealed class KernelAnalyzerTests
{
    private const string EditorConfig = """
        root = true

        [*.manifest.json]
        build_metadata.AdditionalFiles.CompressManifest = true

        [*.compress.json]
        build_metadata.AdditionalFiles.CompressSpec = true
        """;

    private static string Manifest(string operators, string sourceOperators = "[]", int opset = 17) => $$"""
        {
          "version": 1, "name": "Net", "namespace": "App", "generateWrapper": true, "format": "onnx",
          "source": "/0/net.onnx", "spec": "/0/net.compress.json", "artifactPath": "net.onnx", "artifactSha256": null,
          "compressed": false,
          "inputs": [ { "name": "x", "elementType": "float", "shape": [1, 4] } ],
          "outputs": [ { "name": "y", "elementType": "float", "shape": [1, 4] } ],
          "opsets": [ { "domain": "ai.onnx", "version": {{opset}} } ],
          "operators": {{operators}},
          "sourceOperators": {{sourceOperators}},
          "compression": null
        }
        """;

    [Fact]
    public Task An_operator_without_any_cpu_kernel_is_flagged_at_the_operator() => Verify(Manifest("""
        [ { "domain": "ai.onnx", "op": "Relu", "count": 1, "elementTypes": ["float"], "nodes": ["relu"] },
          { "domain": "ai.onnx", "op": {|#0:"|}NoSuchOp", "count": 2, "elementTypes": [], "nodes": ["a", "b"] } ]
        """), null, new DiagnosticResult(Rules.UnsupportedOperator).WithLocation(0).WithArguments("ai.onnx.NoSuchOp", "a, b", 17L, ""));

    [Fact]
    public Task An_operator_on_element_types_it_has_no_kernel_for_is_flagged() => Verify(Manifest("""
        [ { "domain": "ai.onnx", "op": {|#0:"|}Erf", "count": 1, "elementTypes": ["int64"], "nodes": ["erf"] } ]
        """), null, new DiagnosticResult(Rules.UnsupportedOperator).WithLocation(0).WithArguments("ai.onnx.Erf", "erf", 17L, " for int64"));

    [Fact]
    public Task Quantized_models_of_our_passes_are_not_flagged() => Verify(Manifest("""
        [ { "domain": "ai.onnx", "op": "QLinearConv", "count": 2, "elementTypes": ["int32", "int8", "uint8", "float"], "nodes": ["c1", "c2"] },
          { "domain": "ai.onnx", "op": "QuantizeLinear", "count": 1, "elementTypes": ["float", "uint8"], "nodes": ["q"] },
          { "domain": "com.microsoft", "op": "DynamicQuantizeMatMul", "count": 1, "elementTypes": ["float", "int8"], "nodes": ["fc"] },
          { "domain": "ai.onnx", "op": "Relu", "count": 1, "elementTypes": ["float"], "nodes": ["relu"] } ]
        """).Replace("""{ "domain": "ai.onnx", "version": 17 }""", """{ "domain": "ai.onnx", "version": 17 }, { "domain": "com.microsoft", "version": 1 }""", StringComparison.Ordinal), null);

    [Fact]
    public Task Fp16_weights_on_ops_without_fp16_kernels_are_named_at_the_step() => Verify(
        Manifest("[]", """[ { "domain": "ai.onnx", "op": "Conv", "count": 2, "nodes": ["conv1", "conv2"] }, { "domain": "ai.onnx", "op": "LayerNormalization", "count": 1, "nodes": ["ln"] } ]"""),
        """{ "steps": [ { {|#0:"|}quantize": { "weights": "fp16" } } ] }""",
        new DiagnosticResult(Rules.PrecisionWithoutKernel).WithLocation(0).WithArguments("float16 weights", "1 operator type(s) of Net", "Conv (conv1, conv2)"));

    [Fact]
    public Task Int8_activations_on_ops_without_integer_kernels_are_named_at_the_step() => Verify(
        Manifest("[]", """[ { "domain": "ai.onnx", "op": "Conv", "count": 1, "nodes": ["conv"] }, { "domain": "ai.onnx", "op": "Erf", "count": 1, "nodes": ["gelu_erf"] }, { "domain": "ai.onnx", "op": "MaxPool", "count": 1, "nodes": ["pool"] } ]"""),
        """
        {
          "data": { "calibration": { "path": "c.npz" } },
          "steps": [ { {|#0:"|}quantize": { "weights": "int8", "activations": "uint8", "opTypes": ["Conv", "Erf", "MaxPool"] } } ]
        }
        """,
        new DiagnosticResult(Rules.PrecisionWithoutKernel).WithLocation(0).WithArguments("uint8 activations", "1 operator type(s) of Net", "Erf (gelu_erf)"));

    [Fact]
    public Task A_step_whose_ops_all_have_kernels_is_not_flagged() => Verify(
        Manifest("[]", """[ { "domain": "ai.onnx", "op": "Conv", "count": 1, "nodes": ["conv"] }, { "domain": "ai.onnx", "op": "Relu", "count": 1, "nodes": ["relu"] }, { "domain": "ai.onnx", "op": "Erf", "count": 1, "nodes": ["erf"] } ]"""),
        """{ "data": { "calibration": { "path": "c.npz" } }, "steps": [ { "quantize": { "weights": "int8", "activations": "uint8", "opTypes": ["Conv", "Relu"] } } ] }""");

    [Fact]
    public Task A_spec_no_manifest_points_at_is_not_checked() => Verify(
        Manifest("[]", """[ { "domain": "ai.onnx", "op": "Conv", "count": 1, "nodes": ["conv"] } ]""").Replace("/0/net.compress.json", "/0/other.compress.json", StringComparison.Ordinal),
        """{ "steps": [ { "quantize": { "weights": "fp16" } } ] }""");

    [Fact]
    public Task Weight_only_quantization_of_a_model_without_matmul_or_gemm_is_flagged() => Verify(
        Manifest("[]", """[ { "domain": "ai.onnx", "op": "Conv", "count": 2, "nodes": ["c1", "c2"] }, { "domain": "ai.onnx", "op": "Relu", "count": 2, "nodes": ["r1", "r2"] } ]"""),
        """{ "steps": [ { {|#0:"|}quantize": { "weights": "int4", "activations": "none" } } ] }""",
        new DiagnosticResult(Rules.MethodFindsNothing).WithLocation(0).WithArguments("weight-only quantization", "MatMul and Gemm and Gather", "Net", "Conv, Relu"));

    [Fact]
    public Task Pruning_a_model_without_weighted_layers_is_flagged() => Verify(
        Manifest("[]", """[ { "domain": "ai.onnx", "op": "Softmax", "count": 1, "nodes": ["s"] } ]"""),
        """{ "steps": [ { {|#0:"|}prune": { "sparsity": 0.5 } } ] }""",
        new DiagnosticResult(Rules.MethodFindsNothing).WithLocation(0).WithArguments("pruning", "Conv and Gemm and MatMul", "Net", "Softmax"));

    [Fact]
    public Task Dynamic_quantization_of_a_gemm_model_is_not_flagged() => Verify(
        Manifest("[]", """[ { "domain": "ai.onnx", "op": "Gemm", "count": 3, "nodes": ["fc1", "fc2", "fc3"] }, { "domain": "ai.onnx", "op": "Relu", "count": 2, "nodes": ["r1", "r2"] } ]"""),
        """{ "steps": [ { "prune": { "sparsity": 0.5 } }, { "quantize": { "weights": "int8", "activations": "dynamic" } } ] }""");

    /// <summary>
    /// The fix edits the spec (an additional document). Microsoft.CodeAnalysis.Testing 1.1.4 only applies fixes to
    /// source documents, so this drives the provider as the IDE does: a workspace, the analyzer's diagnostic, the action.
    /// </summary>
    [Theory]
    [InlineData(
        """{ "steps": [ { "quantize": { "weights": "fp16" } } ] }""",
        """{ "steps": [ { "quantize": { "exclude": ["Conv"], "weights": "fp16" } } ] }""")]
    [InlineData(
        """{ "steps": [ { "quantize": { "weights": "fp16", "exclude": ["head*"] } } ] }""",
        """{ "steps": [ { "quantize": { "weights": "fp16", "exclude": ["Conv", "head*"] } } ] }""")]
    [InlineData(
        """{ "steps": [ { "quantize": { "weights": "fp16", "exclude": [] } } ] }""",
        """{ "steps": [ { "quantize": { "weights": "fp16", "exclude": ["Conv"] } } ] }""")]
    public async Task The_fix_excludes_the_operators_in_the_spec(string spec, string fixedSpec)
    {
        var manifest = Manifest("[]", """[ { "domain": "ai.onnx", "op": "Conv", "count": 1, "nodes": ["conv"] } ]""");
        using var workspace = new Microsoft.CodeAnalysis.AdhocWorkspace();
        var project = workspace.AddProject("App", Microsoft.CodeAnalysis.LanguageNames.CSharp)
            .AddAnalyzerConfigDocument("/.editorconfig", Microsoft.CodeAnalysis.Text.SourceText.From(EditorConfig), filePath: "/.editorconfig").Project
            .AddAdditionalDocument("net.manifest.json", Microsoft.CodeAnalysis.Text.SourceText.From(manifest), filePath: "/0/net.manifest.json").Project;
        var specDocument = project.AddAdditionalDocument("net.compress.json", Microsoft.CodeAnalysis.Text.SourceText.From(spec), filePath: "/0/net.compress.json");
        project = specDocument.Project;
        var compilation = (await project.GetCompilationAsync())!;
        var diagnostics = await compilation.WithAnalyzers([new KernelAnalyzer()], project.AnalyzerOptions).GetAnalyzerDiagnosticsAsync();
        var diagnostic = Assert.Single(diagnostics);
        Assert.Equal("CMP2004", diagnostic.Id);

        var actions = new List<Microsoft.CodeAnalysis.CodeActions.CodeAction>();
        var context = new Microsoft.CodeAnalysis.CodeFixes.CodeFixContext(project.GetAdditionalDocument(specDocument.Id)!, diagnostic.Location.SourceSpan, [diagnostic], (a, _) => actions.Add(a), CancellationToken.None);
        await new ExcludeOperatorsCodeFix().RegisterCodeFixesAsync(context);
        var action = Assert.Single(actions);
        Assert.Equal("Exclude Conv from this step", action.Title);
        var operation = Assert.Single((await action.GetOperationsAsync(CancellationToken.None)).OfType<Microsoft.CodeAnalysis.CodeActions.ApplyChangesOperation>());
        var text = await operation.ChangedSolution.GetAdditionalDocument(specDocument.Id)!.GetTextAsync();
        Assert.Equal(fixedSpec, text.ToString());
    }

    private static async Task Verify(string manifest, string? spec, params DiagnosticResult[] expected)
    {
        var test = new CSharpAnalyzerTest<KernelAnalyzer, DefaultVerifier> { ReferenceAssemblies = References.None };
        References.AddTo(test.TestState);
        test.TestState.Sources.Add("class C { }");
        test.TestState.AdditionalFiles.Add(("/0/net.manifest.json", manifest));
        if (spec is not null)
        {
            test.TestState.AdditionalFiles.Add(("/0/net.compress.json", spec));
        }

        test.TestState.AnalyzerConfigFiles.Add(("/.editorconfig", EditorConfig));
        test.ExpectedDiagnostics.AddRange(expected);
        await test.RunAsync();
    }
}
