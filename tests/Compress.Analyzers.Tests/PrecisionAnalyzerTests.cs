using Microsoft.CodeAnalysis.CSharp.Testing;
using Microsoft.CodeAnalysis.Testing;
using Compress.Analyzers.CodeFixes;

namespace Compress.Analyzers.Tests;

public sealed class PrecisionAnalyzerTests
{
    /// <summary>What the generator emits, reduced to the signatures that matter here.</summary>
    private const string Wrappers = """
        using System;
        using System.Collections.Generic;

        namespace App
        {
            [System.CodeDom.Compiler.GeneratedCode("Compress.Build", "1")]
            public sealed partial class HalfNetModel
            {
                public object Run(ReadOnlyMemory<Half> input, ReadOnlyMemory<long> tokens, long? n = null) => new object();
            }

            [System.CodeDom.Compiler.GeneratedCode("Compress.Build", "1")]
            public sealed partial class ClassifierModel
            {
                public object Run(ReadOnlyMemory<float> input, long? batch = null) => new object();
            }

            public sealed class NotAWrapper
            {
                public object Run(ReadOnlyMemory<Half> input) => new object();
            }
        }
        """;

    [Fact]
    public Task Float_data_for_an_fp16_input_is_flagged() => Verify("""
        var pixels = new float[8];
        new App.HalfNetModel().Run({|#0:pixels|}, new long[2]);
        """, Expected(0, "input", "HalfNetModel", "float16 (Half)", "float32"));

    [Fact]
    public Task Double_data_for_a_float_input_is_flagged() => Verify("""
        double[] values = { 1, 2 };
        new App.ClassifierModel().Run({|#0:values|});
        """, Expected(0, "input", "ClassifierModel", "float32", "float64"));

    [Fact]
    public Task A_list_and_a_named_argument_are_flagged_too() => Verify("""
        var list = new System.Collections.Generic.List<int> { 1, 2 };
        new App.HalfNetModel().Run(tokens: new long[2], input: {|#0:list|});
        """, Expected(0, "input", "HalfNetModel", "float16 (Half)", "int32"));

    [Fact]
    public Task Matching_data_is_not_flagged() => Verify("""
        var half = new System.Half[8];
        new App.HalfNetModel().Run(half, new long[2], n: 2);
        new App.ClassifierModel().Run(new float[784]);
        """);

    [Fact]
    public Task Run_of_another_class_is_not_flagged() => Verify("""
        new App.NotAWrapper().Run({|CS1503:new float[4]|});
        """);

    [Fact]
    public async Task The_fix_converts_the_argument_to_the_inputs_element_type()
    {
        var test = new CSharpCodeFixTest<PrecisionAnalyzer, ConvertArgumentCodeFix, DefaultVerifier>
        {
            ReferenceAssemblies = References.None,
            TestCode = Program("""
                var pixels = new float[8];
                new App.HalfNetModel().Run([|pixels|], new long[2]);
                """),
            FixedCode = Program("""
                var pixels = new float[8];
                new App.HalfNetModel().Run(Array.ConvertAll(pixels, value => (Half)value), new long[2]);
                """),
        };
        References.AddTo(test.TestState);
        test.TestState.Sources.Add(Wrappers);
        test.FixedState.Sources.Add(Wrappers);
        test.CompilerDiagnostics = CompilerDiagnostics.None; // the compiler's CS1503 before the fix is expected
        await test.RunAsync();
    }

    [Fact]
    public async Task The_fix_converts_a_memory_argument_through_an_array()
    {
        var test = new CSharpCodeFixTest<PrecisionAnalyzer, ConvertArgumentCodeFix, DefaultVerifier>
        {
            ReferenceAssemblies = References.None,
            TestCode = Program("""
                ReadOnlyMemory<double> values = new double[4];
                new App.ClassifierModel().Run([|values|]);
                """),
            FixedCode = Program("""
                ReadOnlyMemory<double> values = new double[4];
                new App.ClassifierModel().Run(Array.ConvertAll(values.ToArray(), value => (float)value));
                """),
        };
        References.AddTo(test.TestState);
        test.TestState.Sources.Add(Wrappers);
        test.FixedState.Sources.Add(Wrappers);
        test.CompilerDiagnostics = CompilerDiagnostics.None;
        await test.RunAsync();
    }

    private static string Program(string body) => $$"""
        using System;

        public static class Program
        {
            public static void Main()
            {
        {{string.Join("\n", body.Split('\n').Select(l => "        " + l))}}
            }
        }
        """;

    private static DiagnosticResult Expected(int location, params object[] arguments) =>
        new DiagnosticResult(Rules.PrecisionMismatch).WithLocation(location).WithArguments(arguments);

    private static async Task Verify(string body, params DiagnosticResult[] expected)
    {
        var test = new CSharpAnalyzerTest<PrecisionAnalyzer, DefaultVerifier> { ReferenceAssemblies = References.None };
        References.AddTo(test.TestState);
        test.TestState.Sources.Add(Program(body));
        test.TestState.Sources.Add(Wrappers);
        test.ExpectedDiagnostics.AddRange(expected);
        if (expected.Length > 0)
        {
            // The compiler's own conversion error stands beside ours; ours says why and offers the fix.
            test.CompilerDiagnostics = CompilerDiagnostics.None;
        }

        await test.RunAsync();
    }
}
