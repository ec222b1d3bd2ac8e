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
            foreach (var diagnostic in context.Diagnostics)
            {
                if (root?.FindNode(diagnostic.Location.SourceSpan, getInnermostNodeForTie: true) is not { } node
                    || node.FirstAncestorOrSelf<ArgumentSyntax>() is not { } argument
                    || !diagnostic.Properties.TryGetValue(PrecisionAnalyzer.WantedType, out var wanted) || wanted is null)
                {
                    continue;
                }

                var title = $"Convert the argument to {wanted.Replace("global::", "")}";
                context.RegisterCodeFix(
                    CodeAction.Create(title, token => ConvertAsync(context.Document, argument, wanted, token), nameof(ConvertArgumentCodeFix)),
                    diagnostic);
            }
        }

        private static async Task<Document> ConvertAsync(Document document, ArgumentSyntax argument, string wanted, CancellationToken token)
        {
            var model = await document.GetSemanticModelAsync(token).ConfigureAwait(false);
            var root = await document.GetSyntaxRootAsync(token).ConfigureAwait(false);
            if (model is null || root is null)
            {
                return document;
            }

            // Names as the user would write them at this spot (Half, not global::System.Half, under `using System;`).
            var position = argument.SpanStart;
            var special = SpecialTypeOf(wanted);
            ITypeSymbol? wantedType = special != SpecialType.None
                ? model.Compilation.GetSpecialType(special)
                : model.Compilation.GetTypeByMetadataName(wanted.Replace("global::", ""));
            var target = wantedType?.ToMinimalDisplayString(model, position) ?? wanted;
            var array = model.Compilation.GetTypeByMetadataName("System.Array")?.ToMinimalDisplayString(model, position) ?? "global::System.Array";
            var expression = argument.Expression.WithoutTrivia();
            var simple = expression is IdentifierNameSyntax or MemberAccessExpressionSyntax or InvocationExpressionSyntax or ElementAccessExpressionSyntax;
            var operand = simple ? expression.ToString() : $"({expression})";
            var type = model.GetTypeInfo(argument.Expression, token).Type;
            var source = type is IArrayTypeSymbol ? expression.ToString()
                : type is INamedTypeSymbol named && named.ConstructedFrom.ToDisplayString() is "System.Collections.Generic.IReadOnlyList<T>" or "System.Collections.Generic.List<T>" or "System.Collections.Generic.IList<T>"
                    ? $"global::System.Linq.Enumerable.ToArray({expression})"
                    : $"{operand}.ToArray()";
            var converted = SyntaxFactory.ParseExpression($"{array}.ConvertAll({source}, value => ({target})value)")
                .WithTriviaFrom(argument.Expression)
                .WithAdditionalAnnotations(Formatter.Annotation);
            return document.WithSyntaxRoot(root.ReplaceNode(argument.Expression, converted));
        }

        private static SpecialType SpecialTypeOf(string name) => name.Replace("global::", "") switch
        {
            "float" or "System.Single" => SpecialType.System_Single,
            "double" or "System.Double" => SpecialType.System_Double,
            "sbyte" or "System.SByte" => SpecialType.System_SByte,
            "byte" or "System.Byte" => SpecialType.System_Byte,
            "short" or "System.Int16" => SpecialType.System_Int16,
            "ushort" or "System.UInt16" => SpecialType.System_UInt16,
            "int" or "System.Int32" => SpecialType.System_Int32,
            "uint" or "System.UInt32" => SpecialType.System_UInt32,
            "long" or "System.Int64" => SpecialType.System_Int64,
            "ulong" or "System.UInt64" => SpecialType.System_UInt64,
            "bool" or "System.Boolean" => SpecialType.System_Boolean,
            _ => SpecialType.None,
        };
    }
}
