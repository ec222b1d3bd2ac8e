using System.Collections.Immutable;
using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Microsoft.CodeAnalysis.Diagnostics;

namespace Compress.Analyzers
{
    /// <summary>
    /// CMP2002: a call to a generated wrapper's <c>Run</c> whose argument holds another element type than the compressed
    /// model's input (a <c>float[]</c> where fp16 compression made the input <c>Half</c>, say). Works on the call's
    /// candidate method too, so it explains the compiler's conversion error instead of leaving it bare.
    /// </summary>
    [DiagnosticAnalyzer(LanguageNames.CSharp)]
    public sealed class PrecisionAnalyzer : DiagnosticAnalyzer
    {
        /// <summary>The diagnostic's properties carry the element type the input wants (metadata name, e.g. System.Half), for the code fix.</summary>
        public const string WantedType = "WantedType";

        public override ImmutableArray<DiagnosticDescriptor> SupportedDiagnostics => ImmutableArray.Create(Rules.PrecisionMismatch);

        public override void Initialize(AnalysisContext context)
        {
            context.ConfigureGeneratedCodeAnalysis(GeneratedCodeAnalysisFlags.None);
            context.EnableConcurrentExecution();
            context.RegisterSyntaxNodeAction(Analyze, SyntaxKind.InvocationExpression);
        }

        private static void Analyze(SyntaxNodeAnalysisContext context)
        {
            var invocation = (InvocationExpressionSyntax)context.Node;
            var name = invocation.Expression switch
            {
                MemberAccessExpressionSyntax member => member.Name.Identifier.ValueText,
                IdentifierNameSyntax identifier => identifier.Identifier.ValueText,
                _ => null,
            };
            if (name != "Run")
            {
                return;
            }

            var info = context.SemanticModel.GetSymbolInfo(invocation, context.CancellationToken);
            var method = info.Symbol as IMethodSymbol ?? info.CandidateSymbols.OfType<IMethodSymbol>().FirstOrDefault(m => m.Name == "Run");
            if (method is null || !IsWrapper(method.ContainingType))
            {
                return;
            }

            var arguments = invocation.ArgumentList.Arguments;
            for (var i = 0; i < arguments.Count; i++)
            {
                var argument = arguments[i];
                var parameter = argument.NameColon is { } named
                    ? method.Parameters.FirstOrDefault(p => p.Name == named.Name.Identifier.ValueText)
                    : i < method.Parameters.Length ? method.Parameters[i] : null;
                var wanted = parameter is null ? null : ElementTypes.Of(parameter.Type);
                var given = ElementTypes.Of(context.SemanticModel.GetTypeInfo(argument.Expression, context.CancellationToken).Type);
                if (wanted is null || given is null || SymbolEqualityComparer.Default.Equals(wanted, given))
                {
                    continue;
                }

                var properties = ImmutableDictionary<string, string?>.Empty.Add(WantedType, ElementTypes.MetadataName(wanted));
                context.ReportDiagnostic(Diagnostic.Create(Rules.PrecisionMismatch, argument.Expression.GetLocation(), properties,
                    parameter!.Name, method.ContainingType.Name, ElementTypes.Describe(wanted), ElementTypes.Describe(given)));
            }
        }

        /// <summary>A class the Compress.Build generator wrote: <c>[GeneratedCode("Compress.Build", …)]</c>.</summary>
        internal static bool IsWrapper(INamedTypeSymbol? type) =>
            type is not null && type.GetAttributes().Any(a =>
                a.AttributeClass?.ToDisplayString() == "System.CodeDom.Compiler.GeneratedCodeAttribute"
                && a.ConstructorArguments.Length > 0 && a.ConstructorArguments[0].Value as string == "Compress.Build");
    }

    /// <summary>Element types of the containers wrappers take and callers pass.</summary>
    internal static class ElementTypes
    {
        /// <summary>T of T[], ReadOnlyMemory&lt;T&gt;, Memory&lt;T&gt;, (ReadOnly)Span&lt;T&gt;, IReadOnlyList&lt;T&gt;, List&lt;T&gt;; null otherwise.</summary>
        public static ITypeSymbol? Of(ITypeSymbol? type)
        {
            switch (type)
            {
                case IArrayTypeSymbol array when array.Rank == 1:
                    return array.ElementType;
                case INamedTypeSymbol named when named.IsGenericType && named.TypeArguments.Length == 1:
                    var definition = named.ConstructedFrom.ToDisplayString();
                    return definition is "System.ReadOnlyMemory<T>" or "System.Memory<T>" or "System.ReadOnlySpan<T>" or "System.Span<T>" || IsList(named)
                        ? named.TypeArguments[0] : null;
                default:
                    return null;
            }
        }

        /// <summary>A list the caller may pass (its elements are read through IEnumerable, not as a span).</summary>
        public static bool IsList(ITypeSymbol? type) =>
            type is INamedTypeSymbol { IsGenericType: true } named
            && named.ConstructedFrom.ToDisplayString() is "System.Collections.Generic.IReadOnlyList<T>" or "System.Collections.Generic.List<T>" or "System.Collections.Generic.IList<T>";

        /// <summary>The element type as diagnostics name it (<c>float32</c>, <c>float16 (Half)</c>, …; other types by their C# name).</summary>
        public static string Describe(ITypeSymbol type) =>
            Compress.Spec.Onnx.WrapperElementType.FindClr(MetadataName(type))?.Label ?? type.ToDisplayString();

        /// <summary>E.g. <c>System.Single</c> for <c>float</c>: what GetTypeByMetadataName resolves.</summary>
        public static string MetadataName(ITypeSymbol type) => type.ContainingNamespace?.ToDisplayString() + "." + type.MetadataName;
    }
}
