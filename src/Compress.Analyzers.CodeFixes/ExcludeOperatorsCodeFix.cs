using System.Collections.Immutable;
using System.Composition;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using Compress.Spec;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CodeActions;
using Microsoft.CodeAnalysis.CodeFixes;
using Microsoft.CodeAnalysis.Text;

namespace Compress.Analyzers.CodeFixes
{
    /// <summary>
    /// CMP2004 fix, in the spec file: add the operators without a kernel to the step's <c>exclude</c> list (which
    /// matches node names and op types), creating the list when the step has none.
    /// </summary>
    [ExportCodeFixProvider(LanguageNames.CSharp, Name = nameof(ExcludeOperatorsCodeFix)), Shared]
    public sealed class ExcludeOperatorsCodeFix : CodeFixProvider
    {
        public override ImmutableArray<string> FixableDiagnosticIds => ImmutableArray.Create(Rules.PrecisionWithoutKernel.Id);

        public override FixAllProvider? GetFixAllProvider() => null;

        public override Task RegisterCodeFixesAsync(CodeFixContext context)
        {
            foreach (var diagnostic in context.Diagnostics)
            {
                if (!diagnostic.Properties.TryGetValue(KernelAnalyzer.OpsProperty, out var ops) || string.IsNullOrEmpty(ops))
                {
                    continue;
                }

                var names = ops!.Split(',');
                context.RegisterCodeFix(
                    CodeAction.Create($"Exclude {string.Join(", ", names)} from this step",
                        token => ExcludeAsync(context.TextDocument, diagnostic, names, token), nameof(ExcludeOperatorsCodeFix)),
                    diagnostic);
            }

            return Task.CompletedTask;
        }

        private static async Task<Solution> ExcludeAsync(TextDocument document, Diagnostic diagnostic, string[] names, CancellationToken token)
        {
            var text = await document.GetTextAsync(token).ConfigureAwait(false);
            var solution = document.Project.Solution;
            JsonNode root;
            try
            {
                root = JsonParser.Parse(text.ToString(), document.FilePath ?? document.Name);
            }
            catch (SpecException)
            {
                return solution;
            }

            var start = diagnostic.Location.GetLineSpan().StartLinePosition;
            var member = root["steps"]?.Items.SelectMany(s => s.Members)
                .FirstOrDefault(m => m.Line == start.Line + 1 && m.Column == start.Character + 1);
            if (member?.Value is not { Kind: JsonKind.Object } step)
            {
                return solution;
            }

            var quoted = string.Join(", ", names.Select(n => "\"" + n + "\""));
            TextChange change;
            if (step["exclude"] is { Kind: JsonKind.Array } exclude)
            {
                var at = Offset(text, exclude.Line, exclude.Column) + 1; // after '['
                change = new TextChange(new TextSpan(at, 0), exclude.Items.Count == 0 ? quoted : quoted + ", ");
            }
            else
            {
                var at = Offset(text, step.Line, step.Column) + 1; // after '{'
                change = new TextChange(new TextSpan(at, 0), $" \"exclude\": [{quoted}],");
            }

            return solution.WithAdditionalDocumentText(document.Id, text.WithChanges(change));
        }

        private static int Offset(SourceText text, int line, int column) => text.Lines[line - 1].Start + column - 1;
    }
}
