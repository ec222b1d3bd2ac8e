using System.Security.Cryptography;
using Compress.Core.Evaluation;
using Compress.Core.Onnx;
using Compress.Spec.Manifest;
using Compress.Spec.Onnx;

namespace Compress.Core.Reports;

/// <summary>Who a manifest is for: the names and paths the build gives a model (the task passes them to the CLI).</summary>
public sealed record ManifestIdentity(string Name, string? Namespace, bool GenerateWrapper, string ArtifactPath)
{
    /// <summary>Defaults for a plain <c>compress run --manifest</c>: named after the output file, artifact next to the app.</summary>
    public static ManifestIdentity For(string outputPath) =>
        new(WrapperNames.FromFileName(outputPath), null, true, Path.GetFileName(outputPath));
}

/// <summary>Builds the manifest of a compressed model: signature, operators with their element types, and the report's figures.</summary>
public static class ManifestFactory
{
    public static ModelManifest Create(CompressionReport report, ManifestIdentity identity)
    {
        var format = ModelFormats.Detect(report.Model);
        var manifest = new ModelManifest
        {
            Name = identity.Name,
            Namespace = identity.Namespace,
            GenerateWrapper = identity.GenerateWrapper,
            Format = format,
            Source = report.Model,
            Spec = report.Spec,
            ArtifactPath = identity.ArtifactPath,
            ArtifactSha256 = Sha256(report.Output),
            Compressed = true,
        };
        if (format == ModelFormats.Onnx)
        {
            // A TorchSharp state dict has no signature or operators: its manifest carries the identity and figures only.
            // A packed model's signature is its expanded ONNX model's.
            var signature = global::Compress.Runtime.Packing.PackedModel.IsPackedFile(report.Output)
                ? OnnxSignatureReader.Read(new MemoryStream(global::Compress.Runtime.Packing.PackedModel.Expand(File.ReadAllBytes(report.Output), report.Output)))
                : OnnxSignatureReader.Read(report.Output);
            manifest.Inputs.AddRange(signature.Inputs);
            manifest.Outputs.AddRange(signature.Outputs);
            manifest.Opsets.AddRange(signature.Opsets);
            manifest.Operators.AddRange(signature.Operators);
            manifest.SourceOperators.AddRange(OnnxSignatureReader.Read(report.Model).Operators);
            AddElementTypes(OnnxModel.Load(report.Output), manifest.Operators);
        }

        var compression = new ManifestCompression
        {
            OriginalBytes = report.Size.OriginalBytes,
            CompressedBytes = report.Size.CompressedBytes,
            OriginalAccuracy = report.Metrics?.OriginalAccuracy,
            CompressedAccuracy = report.Metrics?.CompressedAccuracy,
            Agreement = report.Metrics?.Agreement,
            Samples = report.Metrics?.Samples,
        };
        compression.Steps.AddRange(report.Steps);
        compression.Precisions.AddRange(report.Layers.Select(l => l.Bits switch { 8 => "int8", 4 => "int4", 16 => "float16", _ => "float32" })
            .Distinct().OrderBy(p => p, StringComparer.Ordinal));
        manifest.Compression = compression;
        return manifest;
    }

    public static string Sha256(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexString(SHA256.HashData(stream)).ToLowerInvariant();
    }

    /// <summary>Element types of every top-level value, from initializers, graph inputs and ONNX Runtime's type inference.</summary>
    private static void AddElementTypes(OnnxModel model, List<ManifestOperator> operators)
    {
        var graph = model.Graph;
        var types = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, tensor) in graph.Initializers)
        {
            types[name] = OnnxElementTypes.Name(tensor.DataType);
        }

        foreach (var sparse in graph.Proto.SparseInitializer)
        {
            types[sparse.Values.Name] = OnnxElementTypes.Name(sparse.Values.DataType);
        }

        foreach (var input in graph.Proto.Input.Where(i => i.Type?.TensorType is not null))
        {
            types.TryAdd(input.Name, OnnxElementTypes.Name(input.Type.TensorType.ElemType));
        }

        var produced = graph.Nodes.SelectMany(n => n.Output).Where(o => o.Length > 0).ToList();
        using (var runner = OrtModelRunner.Exposing(model, produced))
        {
            foreach (var name in produced)
            {
                if (runner.OutputElementType(name) is { } type)
                {
                    types[name] = type;
                }
            }
        }

        foreach (var op in operators)
        {
            var domain = op.Domain == "ai.onnx" ? "" : op.Domain;
            var set = new SortedSet<string>(StringComparer.Ordinal);
            foreach (var node in graph.Nodes.Where(n => n.OpType == op.Op && OnnxModel.NormalizeDomain(n.Domain) == OnnxModel.NormalizeDomain(domain)))
            {
                foreach (var value in node.Input.Concat(node.Output))
                {
                    if (value.Length > 0 && types.TryGetValue(value, out var type))
                    {
                        set.Add(type);
                    }
                }
            }

            op.ElementTypes.AddRange(set);
        }
    }
}
