using System.Collections.Generic;

namespace Compress.Spec.Manifest
{
    /// <summary>
    /// What the build knows about one compressed model, written by the CLI (after compressing) or by the MSBuild task
    /// (design-time builds, from a cheap read of the model's signature) and read by the source generator and the
    /// analyzers. The JSON form is <see cref="ManifestJson"/>; its fields are documented in docs/manifest.md.
    /// </summary>
    public sealed class ModelManifest
    {
        public const int CurrentVersion = 1;

        public int Version { get; set; } = CurrentVersion;

        /// <summary>The wrapper's base name (<c>Classifier</c> gives <c>ClassifierModel</c>).</summary>
        public string Name { get; set; } = "";

        public string? Namespace { get; set; }

        public bool GenerateWrapper { get; set; } = true;

        /// <summary><c>onnx</c>, <c>torchsharp</c> or <c>torchscript</c>.</summary>
        public string Format { get; set; } = "onnx";

        /// <summary>The model the project lists (full path).</summary>
        public string Source { get; set; } = "";

        /// <summary>The spec applied (full path), or null for inline metadata only.</summary>
        public string? Spec { get; set; }

        /// <summary>Where the app finds the artifact, relative to its base directory (forward slashes).</summary>
        public string ArtifactPath { get; set; } = "";

        /// <summary>SHA-256 of the artifact (lower-case hex); null until it has been compressed.</summary>
        public string? ArtifactSha256 { get; set; }

        /// <summary>False in a manifest written by a design-time build (signature of the source model only).</summary>
        public bool Compressed { get; set; }

        public List<ManifestValue> Inputs { get; } = new List<ManifestValue>();

        public List<ManifestValue> Outputs { get; } = new List<ManifestValue>();

        public List<ManifestOpset> Opsets { get; } = new List<ManifestOpset>();

        public List<ManifestOperator> Operators { get; } = new List<ManifestOperator>();

        /// <summary>The operators of the source model (before compression), which spec checks are about.</summary>
        public List<ManifestOperator> SourceOperators { get; } = new List<ManifestOperator>();

        public ManifestCompression? Compression { get; set; }
    }

    /// <summary>A model input or output: element type as ONNX names it (<c>float</c>, <c>float16</c>, <c>int64</c>…) and
    /// its shape, each dimension a number, a symbolic name, or null when unknown.</summary>
    public sealed class ManifestValue
    {
        public string Name { get; set; } = "";

        public string ElementType { get; set; } = "";

        /// <summary>Null when the model declares no shape at all.</summary>
        public List<ManifestDimension>? Shape { get; set; }
    }

    public sealed class ManifestDimension
    {
        public ManifestDimension(long? value, string? symbol)
        {
            Value = value;
            Symbol = symbol;
        }

        public long? Value { get; }

        public string? Symbol { get; }

        public override string ToString() => Value?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? Symbol ?? "?";
    }

    public sealed class ManifestOpset
    {
        public ManifestOpset(string domain, long version)
        {
            Domain = domain;
            Version = version;
        }

        /// <summary><c>ai.onnx</c> for the default domain.</summary>
        public string Domain { get; }

        public long Version { get; }
    }

    public sealed class ManifestOperator
    {
        public string Domain { get; set; } = "ai.onnx";

        public string Op { get; set; } = "";

        public int Count { get; set; }

        /// <summary>Element types of the tensors the op's nodes read and write, where known (sorted).</summary>
        public List<string> ElementTypes { get; } = new List<string>();

        /// <summary>Names of the nodes (the first few), for diagnostics.</summary>
        public List<string> Nodes { get; } = new List<string>();
    }

    public sealed class ManifestCompression
    {
        /// <summary>The spec's steps in order, as <c>prune magnitude 0.5</c>-style summaries.</summary>
        public List<string> Steps { get; } = new List<string>();

        public long OriginalBytes { get; set; }

        public long CompressedBytes { get; set; }

        public double? OriginalAccuracy { get; set; }

        public double? CompressedAccuracy { get; set; }

        public double? Agreement { get; set; }

        public int? Samples { get; set; }

        /// <summary>Weight precisions used, e.g. <c>int8</c>, <c>float16</c>.</summary>
        public List<string> Precisions { get; } = new List<string>();

        public string? Report { get; set; }
    }
}
