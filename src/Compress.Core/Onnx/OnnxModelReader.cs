using Compress.Core.Diagnostics;
using Compress.Core.Onnx.Proto;
using Google.Protobuf;

namespace Compress.Core.Onnx;

/// <summary>
/// Reads an ONNX file. The protobuf is parsed from a stream with a recursion limit (length prefixes are
/// checked against the data actually present, so an absurd declared length cannot allocate memory), and every
/// external-data reference is checked before anything outside the model file is opened.
/// </summary>
internal static class OnnxModelReader
{
    public static OnnxModel Read(string path, OnnxReadOptions options)
    {
        var fullPath = System.IO.Path.GetFullPath(path);
        if (!File.Exists(fullPath))
        {
            throw CompressException.Error(DiagnosticCodes.ModelNotFound, "model file not found", path);
        }

        ModelProto proto;
        try
        {
            using var stream = new FileStream(fullPath, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.SequentialScan);
            if (stream.Length == 0)
            {
                throw CompressException.Error(DiagnosticCodes.ModelMalformed, "the file is empty, not an ONNX model", path);
            }

            using var input = Packed(stream, path) is { } expanded
                ? CodedInputStream.CreateWithLimits(new MemoryStream(expanded, writable: false), int.MaxValue, options.RecursionLimit)
                : CodedInputStream.CreateWithLimits(stream, int.MaxValue, options.RecursionLimit);
            proto = new ModelProto();
            proto.MergeFrom(input);
        }
        catch (InvalidProtocolBufferException e) when (e.Message.Contains("nesting", StringComparison.OrdinalIgnoreCase)
                                                        || e.Message.Contains("recursion", StringComparison.OrdinalIgnoreCase))
        {
            throw CompressException.Error(DiagnosticCodes.ModelTooDeep,
                $"messages nest deeper than {options.RecursionLimit} levels; the file is corrupt or hostile", path, inner: e);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw CompressException.Error(DiagnosticCodes.ModelMalformed, $"not a valid ONNX model: {e.Message}", path, inner: e);
        }
        catch (IOException e)
        {
            throw CompressException.Error(DiagnosticCodes.ModelNotFound, $"cannot read the model: {e.Message}", path, inner: e);
        }
        catch (UnauthorizedAccessException e)
        {
            throw CompressException.Error(DiagnosticCodes.ModelNotFound, $"cannot read the model: {e.Message}", path, inner: e);
        }

        // Random bytes sometimes parse as a protobuf; ONNX requires an IR version, an opset import and a graph.
        var missing = !proto.HasIrVersion ? "an IR version" : proto.OpsetImport.Count == 0 ? "an operator set import" : proto.Graph is null ? "a graph" : null;
        if (missing is not null)
        {
            throw CompressException.Error(DiagnosticCodes.ModelMalformed, $"not an ONNX model: it has no {missing}", path);
        }

        var baseDirectory = System.IO.Path.GetDirectoryName(fullPath)!;
        var external = new Dictionary<TensorProto, ExternalDataReference>(ReferenceEqualityComparer.Instance);
        foreach (var tensor in TensorWalker.AllTensors(proto))
        {
            if (ExternalDataReference.IsExternal(tensor))
            {
                external[tensor] = ExternalDataReference.Resolve(tensor, baseDirectory, path);
            }
        }

        return new OnnxModel(proto, fullPath, external);
    }

    /// <summary>A packed model's (<c>.cpack</c>, by its first bytes) ONNX bytes, expanded; null for any other file (the stream rewound).</summary>
    private static byte[]? Packed(FileStream stream, string path)
    {
        Span<byte> head = stackalloc byte[4];
        var read = stream.ReadAtLeast(head, 4, throwOnEndOfStream: false);
        stream.Position = 0;
        if (!global::Compress.Runtime.Packing.PackedModel.IsPacked(head[..read]))
        {
            return null;
        }

        var bytes = new byte[stream.Length];
        stream.ReadExactly(bytes);
        try
        {
            return global::Compress.Runtime.Packing.PackedModel.Expand(bytes, "the packed model");
        }
        catch (global::Compress.Runtime.Packing.PackedModelException e)
        {
            throw CompressException.Error(DiagnosticCodes.PackedModelCorrupt, e.Message, path, inner: e);
        }
    }
}
