using Compress.Core.Diagnostics;
using Compress.Core.Onnx;
using Compress.Runtime.Packing;
using Compress.Spec;
using Google.Protobuf;

namespace Compress.Core.Packing;

/// <summary>Writing the artifact of a spec that packs: the form its <c>format</c> names, at an output named for it.</summary>
internal static class PackOutput
{
    /// <summary>Refuses an output whose extension is not the form's (CMP0061), before the run is judged or written.</summary>
    public static void Check(PackStep pack, CompressionSpec spec, string outputPath)
    {
        var extension = pack.Format == PackStep.PackedFormat ? PackedModel.Extension : ".onnx";
        if (!outputPath.EndsWith(extension, StringComparison.OrdinalIgnoreCase))
        {
            throw CompressException.Error(DiagnosticCodes.PackOutputName,
                pack.Format == PackStep.PackedFormat
                    ? $"'pack' writes a packed model (.cpack), which only Compress.Runtime opens; name the output '{Path.ChangeExtension(Path.GetFileName(outputPath), PackedModel.Extension)}', or set \"format\": \"onnx\" in the pack step (spec line {pack.Line}) for a plain ONNX model"
                    : $"'pack' with \"format\": \"onnx\" writes an ONNX model; name the output '{Path.ChangeExtension(Path.GetFileName(outputPath), ".onnx")}'",
                outputPath);
        }
    }

    /// <summary>Writes the packed or ONNX-only form atomically; refuses one larger than the source (CMP0035). Returns its bytes.</summary>
    public static long Save(OnnxModel model, PackStep pack, long sourceBytes, string outputPath, List<string> notes)
    {
        var bytes = pack.Format == PackStep.PackedFormat ? PackedArtifact.Pack(model, outputPath) : PackedArtifact.GatherForm(model, outputPath).ToByteArray();
        if (bytes.Length > sourceBytes)
        {
            throw CompressException.Error(DiagnosticCodes.ArtifactLarger,
                $"the packed model would be {bytes.Length:N0} bytes, larger than its source ({sourceBytes:N0} bytes); nothing was written", outputPath);
        }

        var full = Path.GetFullPath(outputPath);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        var temp = full + $".{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
        try
        {
            File.WriteAllBytes(temp, bytes);
            File.Move(temp, full, overwrite: true);
        }
        finally
        {
            File.Delete(temp);
        }

        notes.Add(pack.Format == PackStep.PackedFormat
            ? "packed model (.cpack): Compress.Runtime (the generated wrapper's Load, or ModelSessions.Create) expands it in memory to ONNX; docs/packed-format.md"
            : "ONNX-only packed form: codebook + Gather per shared weight, folded to float32 by ONNX Runtime at load");
        return bytes.Length;
    }
}
