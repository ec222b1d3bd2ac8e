using System.Collections.Immutable;
using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Text;

namespace Compress.Generators
{
    /// <summary>
    /// Emits a typed wrapper (<c>sealed partial class &lt;Name&gt;Model : IDisposable</c>) for every model manifest the
    /// build passes as an AdditionalFiles item with <c>CompressManifest="true"</c>. Reads only the manifests.
    /// Each manifest is turned into its whole source text in one step, so an unchanged manifest is a cached string.
    /// </summary>
    [Generator(LanguageNames.CSharp)]
    public sealed class ModelWrapperGenerator : IIncrementalGenerator
    {
        public const string ManifestStep = "CompressManifests";
        public const string WrapperStep = "CompressWrappers";

        public void Initialize(IncrementalGeneratorInitializationContext context)
        {
            var wrappers = context.AdditionalTextsProvider
                .Combine(context.AnalyzerConfigOptionsProvider)
                .Where(pair => pair.Right.GetOptions(pair.Left).TryGetValue("build_metadata.AdditionalFiles.CompressManifest", out var flag)
                    && string.Equals(flag, "true", System.StringComparison.OrdinalIgnoreCase))
                .Select((pair, token) => new ManifestFile(pair.Left.Path, pair.Left.GetText(token)?.ToString() ?? ""))
                .WithTrackingName(ManifestStep)
                .Select((file, _) => WrapperSource.Create(file.Path, file.Text))
                .WithTrackingName(WrapperStep);

            var runtimeReferenced = context.CompilationProvider
                .Select((compilation, _) => new Runtimes(
                    compilation.GetTypeByMetadataName("Compress.Runtime.ModelSessions") is not null,
                    compilation.GetTypeByMetadataName("Compress.Runtime.TorchSharp.StateDictLoader") is not null));

            context.RegisterSourceOutput(wrappers.Collect().Combine(runtimeReferenced), Emit);
        }

        private static void Emit(SourceProductionContext context, (ImmutableArray<WrapperSource> Wrappers, Runtimes Referenced) input)
        {
            var seen = new System.Collections.Generic.Dictionary<string, string>(System.StringComparer.Ordinal);
            foreach (var wrapper in input.Wrappers.OrderBy(w => w.ManifestPath, System.StringComparer.Ordinal))
            {
                foreach (var problem in wrapper.Problems)
                {
                    context.ReportDiagnostic(problem.ToDiagnostic());
                }

                if (wrapper.Source is null)
                {
                    continue;
                }

                if (seen.TryGetValue(wrapper.FullName, out var other))
                {
                    context.ReportDiagnostic(new Problem(Descriptors.NameCollision, wrapper.ManifestPath, 1, 1,
                        wrapper.FullName, System.IO.Path.GetFileName(other)).ToDiagnostic());
                    continue;
                }

                seen.Add(wrapper.FullName, wrapper.ManifestPath);
                if (wrapper.TorchSharp ? !input.Referenced.TorchSharp : !input.Referenced.Onnx)
                {
                    context.ReportDiagnostic(new Problem(wrapper.TorchSharp ? Descriptors.TorchSharpRuntimeMissing : Descriptors.RuntimeMissing,
                        wrapper.ManifestPath, 1, 1, wrapper.FullName).ToDiagnostic());
                    continue;
                }

                context.AddSource(wrapper.HintName, SourceText.From(wrapper.Source, System.Text.Encoding.UTF8));
            }
        }

        private sealed record ManifestFile(string Path, string Text);

        /// <summary>Which runtime packages the compilation references: Compress.Runtime (ONNX), Compress.Runtime.TorchSharp.</summary>
        private sealed record Runtimes(bool Onnx, bool TorchSharp);
    }
}
