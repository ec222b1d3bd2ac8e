using System.Collections.Generic;

namespace Compress.Spec.Methods
{
    /// <summary>
    /// <c>pack</c>: Deep-Compression weight sharing and entropy coding (algorithms.md §17) — bits per layer, the artifact's
    /// form, and whether the codebook is refitted on the calibration data. It comes last: it turns the weights into the
    /// shipped artifact.
    /// </summary>
    internal sealed class PackKind : StepKind
    {
        public PackKind()
            : base("pack", "packing", KmeansMethod.Name,
                new[] { "method", "bits", "format", "refine" },
                new Dictionary<string, string[]> { ["format"] = new[] { PackStep.PackedFormat, PackStep.OnnxFormat } })
        {
        }

        internal override SpecStep Read(SpecValues values, JsonNode node, MethodDescriptor method, string written)
        {
            var step = new PackStep
            {
                Method = written,
                Bits = (int)(values.OptionalNumber(node, "bits", 2, 8, integer: true) ?? 5),
                Format = values.Choice(node, "format", "pack.format") ?? PackStep.PackedFormat,
                Refine = node["refine"] is JsonNode refine ? values.Boolean(refine, "'refine'") : null,
            };
            RefuseOptionsNotTaken(values, node, method, written);
            ReadOptions(values, node, method, step);
            return step;
        }

        internal override string Describe(SpecStep step) => $"{((PackStep)step).Bits}-bit packing";
    }
}
