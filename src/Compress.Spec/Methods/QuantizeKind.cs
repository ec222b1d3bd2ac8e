using System.Collections.Generic;
using System.Linq;

namespace Compress.Spec.Methods
{
    /// <summary>
    /// <c>quantize</c>: weights, activations and their calibration. The weights and activations choose the step's
    /// scheme (<see cref="QuantizeStep.Scheme"/>), which its method must be able to write.
    /// </summary>
    internal sealed class QuantizeKind : StepKind
    {
        public QuantizeKind()
            : base("quantize", "quantization", RtnMethod.Name,
                new[] { "method", "weights", "activations", "granularity", "calibration", "percentile", "minActivationSqnrDb", "biasCorrection", "smoothing", "blockSize", "symmetric", "form" },
                new Dictionary<string, string[]>
                {
                    ["weights"] = new[] { "int8", "int4", "fp16" },
                    ["activations"] = new[] { "int8", "uint8", "dynamic", "none" },
                    ["granularity"] = new[] { "channel", "tensor" },
                    ["calibration"] = new[] { "minmax", "percentile", "entropy", "mse" },
                    ["form"] = new[] { "auto", "kernel", "float", "int8" },
                })
        {
        }

        internal override SpecStep Read(SpecValues values, JsonNode node, MethodDescriptor method, string written)
        {
            var step = new QuantizeStep
            {
                Method = written,
                Weights = values.Choice(node, "weights", "quantize.weights") ?? "int8",
                Granularity = values.Choice(node, "granularity", "quantize.granularity") ?? "channel",
                Calibration = values.Choice(node, "calibration", "quantize.calibration") ?? "minmax",
                Percentile = values.OptionalNumber(node, "percentile", 90, 100) ?? 99.999,
                MinActivationSqnrDb = values.OptionalNumber(node, "minActivationSqnrDb", 0, 100),
                Symmetric = node["symmetric"] is JsonNode symmetric ? values.Boolean(symmetric, "'symmetric'") : true,
                SymmetricDefaulted = node["symmetric"] == null,
                BiasCorrection = node["biasCorrection"] is JsonNode correction && values.Boolean(correction, "'biasCorrection'"),
                Smoothing = values.OptionalNumber(node, "smoothing", 0, 1),
                Form = values.Choice(node, "form", "quantize.form") ?? "auto",
            };
            step.Activations = values.Choice(node, "activations", "quantize.activations") ?? (step.Weights == "fp16" ? "none" : step.Weights == "int4" ? "none" : "int8");

            // int4 weight-only naming no method runs GPTQ with act-order when the spec has calibration data, so it takes GPTQ's options.
            var int4Default = node["method"] == null && step.Weights == "int4" && step.Activations == "none";
            var optionsOf = int4Default ? GptqMethod.Descriptor : method;
            ReadOptions(values, node, optionsOf, step);
            step.ActOrder = int4Default && node["actOrder"] == null || step.Option("actOrder", 0) != 0;
            step.Damping = step.Option("damping", step.Damping);
            if (node["blockSize"] is JsonNode block)
            {
                var size = (int)values.Number(block, "'blockSize'", 16, 256, integer: true);
                if ((size & (size - 1)) != 0)
                {
                    throw values.Error(SpecCodes.OutOfRange, block, $"'blockSize' {size} is not a power of two between 16 and 256");
                }

                step.BlockSize = size;
            }

            if (step.Weights == "fp16" && node["activations"] != null && step.Activations != "none")
            {
                throw values.Error(SpecCodes.Inconsistent, node["activations"]!, "fp16 converts weights and activations together; leave 'activations' out");
            }

            if (step.Weights == "int4" && step.Activations != "none")
            {
                throw values.Error(SpecCodes.Inconsistent, node["activations"]!, "int4 weights are weight-only (MatMulNBits): set 'activations' to 'none'");
            }

            if (node["blockSize"] != null && step.Scheme != QuantizeSchemes.WeightOnly)
            {
                throw values.Error(SpecCodes.Inconsistent, node["blockSize"]!, "'blockSize' applies to weight-only quantization ('activations': 'none')");
            }

            if (node["form"] != null && step.Scheme != QuantizeSchemes.WeightOnly)
            {
                throw values.Error(SpecCodes.Inconsistent, node["form"]!, "'form' applies to weight-only quantization ('activations': 'none')");
            }

            if ((node["calibration"] ?? node["percentile"] ?? node["minActivationSqnrDb"] ?? node["biasCorrection"] ?? node["smoothing"]) is JsonNode calibrationOnly && step.Scheme != QuantizeSchemes.Static)
            {
                throw values.Error(SpecCodes.Inconsistent, calibrationOnly, "activation calibration applies to static quantization ('activations': 'int8' or 'uint8')");
            }

            if (method.Scheme(step.Scheme) is null)
            {
                throw values.Error(SpecCodes.Inconsistent, node["method"] ?? node,
                    $"'{written}' writes {string.Join(" or ", method.Schemes.Select(s => s.Summary))}, not {step.Scheme}");
            }

            RefuseOptionsNotTaken(values, node, optionsOf, written);
            if (node["percentile"] != null && step.Calibration != "percentile")
            {
                throw values.Error(SpecCodes.Inconsistent, node["percentile"]!, "'percentile' applies to 'calibration': 'percentile'");
            }

            return step;
        }

        internal override string Describe(SpecStep step) => $"{step.Scheme} quantization (activations '{((QuantizeStep)step).Activations}')";

        /// <summary>Every option of the methods that take the key, as one sentence: <c>'actOrder' and 'damping' apply to 'method': 'gptq'</c>.</summary>
        protected override string OptionNotTaken(string key, IReadOnlyList<MethodDescriptor> takers, string written)
        {
            var keys = takers.SelectMany(t => t.Options).Select(o => o.Key).Distinct().ToList();
            return $"{List(keys, "and")} {(keys.Count == 1 ? "applies" : "apply")} to 'method': {List(takers.Select(t => t.Name), "or")}";
        }
    }
}
