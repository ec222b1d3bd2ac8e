using Compress.Core.Diagnostics;
using Compress.Core.Formats;
using Compress.Core.StateDicts;
using Compress.Spec;

namespace Compress.Core;

/// <summary>Which kind of model a file is (by its extension for ONNX, else by its first bytes), and opening it as that format.</summary>
public static class ModelFormats
{
    public const string Onnx = "onnx";
    public const string TorchSharp = "torchsharp";
    public const string TorchScript = "torchscript";

    /// <summary>Opens the model for a compression run by <paramref name="spec"/>; a format other than ONNX or TorchScript reads a TorchSharp state dict.</summary>
    internal static IModelFormat Open(string format, string path, CompressionSpec spec, Action<string> progress) => format switch
    {
        not Onnx when spec.SyntheticCalibration is { } synthetic => throw CompressException.Error(DiagnosticCodes.SynthesisInputUnsupported,
            $"'synthesize' makes calibration inputs for ONNX models; this is a {format} model: give a data file in data.calibration.path", spec.File, synthetic.Line, synthetic.Column),
        not TorchSharp when spec.Module is { } module => throw Spec.SpecLoader.At(spec, module.Line, module.Column, SpecCodes.Inconsistent,
            $"'module' names the TorchSharp module class a state dict runs in; this is a{(format == Onnx ? "n ONNX model" : " TorchScript archive")}, which carries its own code: leave 'module' out"),
        Onnx => new OnnxFormat(path, spec, progress),
        TorchScript => new TorchScriptFormat(path, spec),
        _ when spec.Module is not null => new ModuleStateDictFormat(path, spec),
        _ => new StateDictFormat(path, spec),
    };

    /// <summary><c>onnx</c> for .onnx; <c>torchscript</c> for a zip archive (what <c>torch.jit.save</c> writes); else <c>torchsharp</c>.</summary>
    public static string Detect(string path)
    {
        if (path.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase) || path.EndsWith(global::Compress.Runtime.Packing.PackedModel.Extension, StringComparison.OrdinalIgnoreCase))
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
