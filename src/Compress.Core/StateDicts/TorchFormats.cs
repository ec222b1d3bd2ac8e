using Compress.Core.Diagnostics;
using Compress.Spec;
using SpecLoader = Compress.Core.Spec.SpecLoader;

namespace Compress.Core.StateDicts;

/// <summary>What the TorchSharp and TorchScript compressors share: the output check and the refusal of what needs an ONNX graph.</summary>
internal static class TorchFormats
{
    public static void CheckOutput(string modelPath, string outputPath)
    {
        if (Path.GetFullPath(outputPath) == Path.GetFullPath(modelPath))
        {
            throw CompressException.Error(DiagnosticCodes.OutputInvalid, "the output would overwrite the input model; choose another --output", outputPath);
        }
    }

    /// <summary>Refuses, at its place in the spec, every step the format cannot run: only <paramref name="pruneMethods"/>, weight-only or fp16.</summary>
    public static void Refuse(CompressionSpec spec, string format, IReadOnlyCollection<string> pruneMethods, bool constraints)
    {
        foreach (var step in spec.Steps)
        {
            var problem = step switch
            {
                PruneStep p when !pruneMethods.Contains(p.Method) => $"'{p.Method}' is not offered for {format} models (they take {string.Join(", ", pruneMethods.Select(m => $"'{m}'"))}); export the model to ONNX for it",
                PruneStep { N: > 0 } => $"N:M patterns are not offered for {format} models; use unstructured sparsity",
                PruneStep { Auto: true } => $"'sparsity': 'auto' is offered for ONNX models, not {format}",
                QuantizeStep q when q.Method != "rtn" => $"'{q.Method}' runs on ONNX graphs, not {format} models",
                QuantizeStep q when q.Scheme is not ("weight-only" or "fp16") => $"{q.Scheme} quantization needs an ONNX graph; for {format} models set 'activations' to 'none' (int8/int4) or use fp16",
                QuantizeStep { Symmetric: false } => $"{format} int4/int8 is symmetric; leave out 'symmetric'",
                _ => null,
            };
            if (problem is not null)
            {
                throw SpecLoader.At(spec, step.Line, step.Column, SpecCodes.Inconsistent, problem);
            }
        }

        var c = spec.Constraints;
        if (!constraints && (c.MaxAccuracyDrop is not null || c.MinAgreement is not null || c.MinSqnrDb is not null))
        {
            throw SpecLoader.At(spec, 1, 1, SpecCodes.Inconsistent, $"constraints need a model that can be evaluated; a {format} file has no graph. Check accuracy in your app after LoadInto");
        }
    }
}
