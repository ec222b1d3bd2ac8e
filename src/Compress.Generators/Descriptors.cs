using Microsoft.CodeAnalysis;

namespace Compress.Generators
{
    /// <summary>The generator's diagnostics (CMP1xxx; help pages under docs/diagnostics/).</summary>
    public static class Descriptors
    {
        private const string Category = "Compress.Build";

        public static readonly DiagnosticDescriptor MalformedManifest = new DiagnosticDescriptor(
            Compress.Spec.Manifest.ManifestJson.MalformedCode, "Model manifest is malformed", "{0}", Category, DiagnosticSeverity.Error, true,
            helpLinkUri: Compress.Spec.BuildCodes.HelpLink(Compress.Spec.Manifest.ManifestJson.MalformedCode));

        public static readonly DiagnosticDescriptor NameCollision = new DiagnosticDescriptor(
            "CMP1002", "Two models would get the same wrapper class", "The wrapper '{0}' is already generated for {1}; set WrapperName or Namespace on one of the CompressModel items",
            Category, DiagnosticSeverity.Error, true, helpLinkUri: Compress.Spec.BuildCodes.HelpLink("CMP1002"));

        public static readonly DiagnosticDescriptor UnsupportedType = new DiagnosticDescriptor(
            "CMP1003", "Model input or output type not supported by wrappers", "No wrapper for '{0}': {1} '{2}' has element type '{3}', which generated wrappers do not support (use the ONNX Runtime API for this model, or set GenerateWrapper=\"false\")",
            Category, DiagnosticSeverity.Warning, true, helpLinkUri: Compress.Spec.BuildCodes.HelpLink("CMP1003"));

        public static readonly DiagnosticDescriptor RuntimeMissing = new DiagnosticDescriptor(
            "CMP1004", "Compress.Runtime is not referenced", "No wrapper for '{0}': generated wrappers call Compress.Runtime; add <PackageReference Include=\"Compress.Runtime\" />, or set GenerateWrapper=\"false\" on the CompressModel item",
            Category, DiagnosticSeverity.Warning, true, helpLinkUri: Compress.Spec.BuildCodes.HelpLink("CMP1004"));

        public static readonly DiagnosticDescriptor TorchSharpRuntimeMissing = new DiagnosticDescriptor(
            "CMP1005", "Compress.Runtime.TorchSharp is not referenced", "No wrapper for '{0}': TorchSharp state-dict loaders and TorchScript wrappers call Compress.Runtime.TorchSharp; add <PackageReference Include=\"Compress.Runtime.TorchSharp\" />, or set GenerateWrapper=\"false\" on the CompressModel item",
            Category, DiagnosticSeverity.Warning, true, helpLinkUri: Compress.Spec.BuildCodes.HelpLink("CMP1005"));
    }
}
