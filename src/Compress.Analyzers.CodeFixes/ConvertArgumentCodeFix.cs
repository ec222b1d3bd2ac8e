using System.Collections.Immutable;
using System.Composition;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CodeActions;
using Microsoft.CodeAnalysis.CodeFixes;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Microsoft.CodeAnalysis.Formatting;

namespace Compress.Analyzers.CodeFixes
{
    /// <summary>CMP2002 fix: convert the argument to the element type the compressed model's input takes.</summary>
    [ExportCodeFixProvider(LanguageNames.CSharp, Name = nameof(ConvertArgumentCodeFix)), Shared]
    public sealed class ConvertArgumentCodeFix : CodeFixProvider
    {
        public override ImmutableArray<string> FixableDiagnosticIds => ImmutableArray.Create(Rules.PrecisionMismatch.Id);

        public override FixAllProvider GetFixAllProvider() => WellKnownFixAllProviders.BatchFixer;

        public override async Task RegisterCodeFixesAsync(CodeFixContext context)
        {
            var root = await context.Document.GetSyntaxRootAsync(context.CancellationToken).ConfigureAwait(false);
            var model = await context.Document.GetSemanticModelAsync(context.CancellationToken).ConfigureAwait(false);
            foreach (var diagnostic in context.Diagnostics)
            {
                if (root?.FindNode(diagnostic.Location.SourceSpan, getInnermostNodeForTie: true) is not { } node
                    || node.FirstAncestorOrSelf<ArgumentSyntax>() is not { } argument
                    || !diagnostic.Properties.TryGetValue(PrecisionAnalyzer.WantedType, out var name) || name is null
                    || model?.Compilation.GetTypeByMetadataName(name) is not { } wanted)
                {
                    continue;
                }

                context.RegisterCodeFix(
                    CodeAction.Create($"Convert the argument to {wanted.ToDisplayString()}", token => ConvertAsync(context.Document, argument, wanted, token), nameof(ConvertArgumentCodeFix)),
                    diagnostic);
            }
        }

        private static async Task<Document> ConvertAsync(Document document, ArgumentSyntax argument, ITypeSymbol wanted, CancellationToken token)
        {
            var model = await document.GetSemanticModelAsync(token).ConfigureAwait(false);
            var root = await document.GetSyntaxRootAsync(token).ConfigureAwait(false);
            if (model is null || root is null)
            {
                return document;
            }

            // Names as the user would write them at this spot (Half, not global::System.Half, under `using System;`).
            var position = argument.SpanStart;
            var target = wanted.ToMinimalDisplayString(model, position);
            var array = model.Compilation.GetTypeByMetadataName("System.Array")?.ToMinimalDisplayString(model, position) ?? "global::System.Array";
            var expression = argument.Expression.WithoutTrivia();
            var simple = expression is IdentifierNameSyntax or MemberAccessExpressionSyntax or InvocationExpressionSyntax or ElementAccessExpressionSyntax;
            var operand = simple ? expression.ToString() : $"({expression})";
            var type = model.GetTypeInfo(argument.Expression, token).Type;
            var source = type is IArrayTypeSymbol ? expression.ToString()
                : ElementTypes.IsList(type)
                    ? $"global::System.Linq.Enumerable.ToArray({expression})"
                    : $"{operand}.ToArray()";
            var converted = SyntaxFactory.ParseExpression($"{array}.ConvertAll({source}, value => ({target})value)")
                .WithTriviaFrom(argument.Expression)
                .WithAdditionalAnnotations(Formatter.Annotation);
            return document.WithSyntaxRoot(root.ReplaceNode(argument.Expression, converted));
        }
    }
}
