using Compress.Spec;
using Microsoft.CodeAnalysis;

namespace Compress.Analyzers
{
    /// <summary>The analyzers' diagnostics (CMP2xxx; help pages under docs/diagnostics/).</summary>
    public static class Rules
    {
        public const string Category = "Compress.Build";

        public static readonly DiagnosticDescriptor SpecError = new DiagnosticDescriptor(
            "CMP2001", "Compression spec error", "{0} ({1})", Category, DiagnosticSeverity.Error, true,
            description: "The same rules the compress engine applies when it reads the spec, shown while editing.",
            helpLinkUri: BuildCodes.HelpLink("CMP2001"));

        public static readonly DiagnosticDescriptor PrecisionMismatch = new DiagnosticDescriptor(
            "CMP2002", "Argument precision differs from the compressed model's input",
            "Input '{0}' of {1} takes {2} in the compressed model, but the argument holds {3}",
            Category, DiagnosticSeverity.Warning, true,
            description: "A generated wrapper's input has the element type of the compressed model (e.g. float16 after fp16 compression); data of another element type must be converted.",
            helpLinkUri: BuildCodes.HelpLink("CMP2002"));

        public static readonly DiagnosticDescriptor UnsupportedOperator = new DiagnosticDescriptor(
            "CMP2003", "Operator not supported by the shipped ONNX Runtime",
            "{0} ({1}) has no CPU kernel in the shipped ONNX Runtime at opset {2}{3}; the model will not load",
            Category, DiagnosticSeverity.Warning, true,
            description: "Checked against the kernel table of the ONNX Runtime version this package ships (verified against the runtime itself).",
            helpLinkUri: BuildCodes.HelpLink("CMP2003"));

        public static readonly DiagnosticDescriptor PrecisionWithoutKernel = new DiagnosticDescriptor(
            "CMP2004", "Requested precision has no kernel for some operators",
            "This quantize step asks for {0}; ONNX Runtime's CPU provider has no such kernel for {1}: {2} (they stay float32 behind Cast or Q/DQ nodes)",
            Category, DiagnosticSeverity.Warning, true,
            description: "Operators without a kernel for the requested precision fall back to float32 (behind Cast or Q/DQ nodes), which costs size or speed; exclude them or choose another precision.",
            helpLinkUri: BuildCodes.HelpLink("CMP2004"));

        public static readonly DiagnosticDescriptor MethodFindsNothing = new DiagnosticDescriptor(
            "CMP2005", "The step's method has nothing to work on in this model",
            "This {0} step only handles {1}, and {2} has none (its operators: {3}); the step would change nothing",
            Category, DiagnosticSeverity.Warning, true,
            description: "Weight-only and dynamic quantization handle MatMul and Gemm; pruning handles Conv, Gemm and MatMul weights.",
            helpLinkUri: BuildCodes.HelpLink("CMP2005"));
    }
}
