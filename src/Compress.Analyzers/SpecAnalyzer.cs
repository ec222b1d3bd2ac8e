using System.Collections.Immutable;
using Compress.Spec;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Diagnostics;
using Microsoft.CodeAnalysis.Text;

namespace Compress.Analyzers
{
    /// <summary>
    /// CMP2001: a compression spec (an AdditionalFiles item with <c>CompressSpec="true"</c>, which the targets add for
    /// every CompressModel's Spec) checked with the engine's own <see cref="SpecReader"/>, at the exact line and column.
    /// Data files are not checked here (an analyzer does no file access); the build checks them.
    /// </summary>
    [DiagnosticAnalyzer(LanguageNames.CSharp)]
    public sealed class SpecAnalyzer : DiagnosticAnalyzer
    {
        public override ImmutableArray<DiagnosticDescriptor> SupportedDiagnostics => ImmutableArray.Create(Rules.SpecError);

        public override void Initialize(AnalysisContext context)
        {
            context.ConfigureGeneratedCodeAnalysis(GeneratedCodeAnalysisFlags.None);
            context.EnableConcurrentExecution();
            context.RegisterCompilationStartAction(start => start.RegisterAdditionalFileAction(Analyze));
        }

        private static void Analyze(AdditionalFileAnalysisContext context)
        {
            var options = context.Options.AnalyzerConfigOptionsProvider.GetOptions(context.AdditionalFile);
            if (!options.TryGetValue("build_metadata.AdditionalFiles.CompressSpec", out var flag) || !string.Equals(flag, "true", System.StringComparison.OrdinalIgnoreCase))
            {
                return;
            }

            var text = context.AdditionalFile.GetText(context.CancellationToken);
            if (text is null)
            {
                return;
            }

            try
            {
                SpecReader.Read(text.ToString(), context.AdditionalFile.Path, checkFiles: false);
            }
            catch (SpecException e)
            {
                context.ReportDiagnostic(Diagnostic.Create(Rules.SpecError, At(context.AdditionalFile.Path, text, e.Line, e.Column), e.Message, e.Code));
            }
        }

        /// <summary>A location at 1-based <paramref name="line"/>/<paramref name="column"/>, one character wide where possible.</summary>
        internal static Location At(string path, SourceText text, int line, int column)
        {
            var lineIndex = System.Math.Min(System.Math.Max(line - 1, 0), System.Math.Max(text.Lines.Count - 1, 0));
            var lineSpan = text.Lines.Count == 0 ? default : text.Lines[lineIndex].Span;
            var start = System.Math.Min(lineSpan.Start + System.Math.Max(column - 1, 0), lineSpan.End);
            var span = new TextSpan(start, start < lineSpan.End ? 1 : 0);
            return Location.Create(path, span, text.Lines.GetLinePositionSpan(span));
        }
    }
}
