using Compress.Core.Diagnostics;

namespace Compress.Core;

/// <summary>Which kind of model a file is: by its extension for ONNX, else by its first bytes.</summary>
public static class ModelFormats
{
    public const string Onnx = "onnx";
    public const string TorchSharp = "torchsharp";
    public const string TorchScript = "torchscript";

    /// <summary><c>onnx</c> for .onnx; <c>torchscript</c> for a zip archive (what <c>torch.jit.save</c> writes); else <c>torchsharp</c>.</summary>
    public static string Detect(string path)
    {
        if (path.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase))
        {
            return Onnx;
        }

        Span<byte> head = stackalloc byte[4];
        try
        {
            using var stream = File.OpenRead(path);
            var read = stream.Read(head);
            return read == 4 && head[0] == (byte)'P' && head[1] == (byte)'K' && head[2] == 3 && head[3] == 4 ? TorchScript : TorchSharp;
        }
        catch (IOException e)
        {
            throw CompressException.Error(DiagnosticCodes.ModelNotFound, $"cannot read the model: {e.Message}", path, inner: e);
        }
    }
}
