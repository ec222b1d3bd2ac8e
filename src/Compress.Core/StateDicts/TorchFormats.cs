using Compress.Core.Diagnostics;
using Compress.Spec;
using Compress.Spec.Methods;
using SpecLoader = Compress.Core.Spec.SpecLoader;

namespace Compress.Core.StateDicts;

/// <summary>What the TorchSharp and TorchScript formats share: the refusal of what needs an ONNX graph.</summary>
internal static class TorchFormats
{
    /// <summary>
    /// Refuses, at its place in the spec, every step the format cannot run: a method or scheme whose descriptor does not
    /// offer <paramref name="format"/> (<see cref="MethodDescriptor.Formats"/>), N:M, <c>auto</c>, asymmetric grids.
    /// </summary>
    /// <param name="name">The format in messages: <c>TorchScript</c>, <c>TorchSharp state-dict</c>.</param>
    public static void Refuse(CompressionSpec spec, ModelFormat format, string name, bool constraints)
    {
        var pruneMethods = MethodCatalog.Of(StepKind.Prune).Where(m => m.Offers(format)).Select(m => $"'{m.Name}'");
        foreach (var step in spec.Steps)
        {
            var method = MethodCatalog.Of(step);
            var problem = step switch
            {
                PruneStep p when !method.Offers(format) => $"'{p.Method}' is not offered for {name} models (they take {string.Join(", ", pruneMethods)}); export the model to ONNX for it",
                PruneStep { N: > 0 } => $"N:M patterns are not offered for {name} models; use unstructured sparsity",
                PruneStep { Channel: true } => $"'pattern': 'channel' removes channels from an ONNX graph, not {name} models; export the model to ONNX for it",
                PruneStep { Auto: true } => $"'sparsity': 'auto' is offered for ONNX models, not {name}",
                QuantizeStep q when !method.Offers(format) => $"'{q.Method}' runs on ONNX graphs, not {name} models",
                QuantizeStep q when !method.Offers(format, q.Scheme) => $"{q.Scheme} quantization needs an ONNX graph; for {name} models set 'activations' to 'none' (int8/int4) or use fp16",
                QuantizeStep { Symmetric: false } => $"{name} int4/int8 is symmetric; leave out 'symmetric'",
                FinetuneStep when format == ModelFormat.TorchSharp && spec.Module is null =>
                    $"'finetune' trains through the model's forward pass, and a {name} file holds only weights (no code to run): name your module class in the spec's 'module' (\"type\": \"Namespace.Type, Assembly\"), or export the module to TorchScript or ONNX and compress that",
                FinetuneStep when !method.Offers(format) => $"'finetune' with '{step.Method}' is not offered for {name} models; export the model to ONNX for it",
                _ => null,
            };
            if (problem is not null)
            {
                throw SpecLoader.At(spec, step.Line, step.Column, SpecCodes.Inconsistent, problem);
            }
        }

        var c = spec.Constraints;
        if (!constraints && (c.MaxAccuracyDrop is not null || c.MinAgreement is not null || c.MinCosine is not null || c.MinSqnrDb is not null))
        {
            throw SpecLoader.At(spec, 1, 1, SpecCodes.Inconsistent, format == ModelFormat.TorchSharp
                ? $"constraints need a model that can be evaluated, and a {name} file holds only weights: name your module class in the spec's 'module' (\"type\": \"Namespace.Type, Assembly\") to run it, or check accuracy in your app after LoadInto"
                : $"constraints need a model that can be evaluated; a {name} file has no graph. Check accuracy in your app after LoadInto");
        }
    }
}
