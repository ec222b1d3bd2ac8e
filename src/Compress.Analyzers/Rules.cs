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
            helpLinkUri: HelpLink("CMP2001"));

        public static readonly DiagnosticDescriptor PrecisionMismatch = new DiagnosticDescriptor(
            "CMP2002", "Argument precision differs from the compressed model's input",
            "Input '{0}' of {1} takes {2} in the compressed model, but the argument holds {3}",
            Category, DiagnosticSeverity.Warning, true,
            description: "A generated wrapper's input has the element type of the compressed model (e.g. float16 after fp16 compression); data of another element type must be converted.",
            helpLinkUri: HelpLink("CMP2002"));

        public static string HelpLink(string id) => $"https://github.com/compress-build/compress-build/blob/main/docs/diagnostics/{id}.md";
    }
}
