using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;

namespace Compress.Spec
{
    /// <summary>
    /// The spec that <c>CompressModel</c> item metadata stands for (<c>Quantize="int8"</c>, <c>Sparsity="0.5"</c>, …),
    /// written as an ordinary spec file so the engine reads one format. docs/msbuild.md lists the metadata.
    /// </summary>
    public static class InlineSpec
    {
        /// <summary>Metadata names that make up an inline spec, in the order they are documented.</summary>
        public static readonly string[] Names =
        {
            "Quantize", "Sparsity", "CalibrationData", "CalibrationSamples", "EvaluationData", "Labels", "MaxAccuracyDrop", "MinAgreement",
        };

        /// <summary>Quantize values and what they mean.</summary>
        public static readonly IReadOnlyDictionary<string, string> QuantizeChoices = new Dictionary<string, string>
        {
            ["int8"] = "static int8: per-channel int8 weights, uint8 activations calibrated on CalibrationData",
            ["int8-dynamic"] = "dynamic int8 for MatMul/Gemm (activations quantized at run time; no data needed)",
            ["int8-weights"] = "int8 weight-only by blocks of 32 (MatMulNBits) for MatMul/Gemm",
            ["int4"] = "int4 weight-only by blocks of 32 (MatMulNBits) for MatMul/Gemm",
            ["fp16"] = "float16 weights, float32 inputs and outputs kept",
        };

        public static bool Uses(IReadOnlyDictionary<string, string> metadata)
        {
            foreach (var name in Names)
            {
                if (metadata.TryGetValue(name, out var value) && !string.IsNullOrWhiteSpace(value))
                {
                    return true;
                }
            }

            return false;
        }

        /// <param name="metadata">Item metadata by name; empty values count as absent.</param>
        /// <param name="baseDirectory">Relative data paths are resolved against it (the project's directory).</param>
        /// <param name="location">Where errors point (the project file).</param>
        public static string Build(IReadOnlyDictionary<string, string> metadata, string baseDirectory, string location)
        {
            string? Get(string name) => metadata.TryGetValue(name, out var v) && !string.IsNullOrWhiteSpace(v) ? v.Trim() : null;
            SpecException Invalid(string message) => new SpecException(BuildCodes.InlineInvalid, message, location, 0, 0);
            double Fraction(string name, string text, bool open)
            {
                if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || value < 0 || value > 1 || (open && (value == 0 || value == 1)))
                {
                    throw Invalid($"{name}=\"{text}\" must be a number {(open ? "strictly between 0 and 1" : "from 0 to 1")}");
                }

                return value;
            }

            var quantize = Get("Quantize");
            var sparsity = Get("Sparsity");
            if (quantize is null && sparsity is null)
            {
                throw Invalid("inline compression needs Quantize or Sparsity (or a Spec file)");
            }

            if (quantize is not null && !QuantizeChoices.ContainsKey(quantize))
            {
                throw Invalid($"Quantize=\"{quantize}\" is not one of: {string.Join(", ", QuantizeChoices.Keys)}");
            }

            var calibration = Get("CalibrationData");
            if (quantize == "int8" && calibration is null)
            {
                throw Invalid("Quantize=\"int8\" (static) calibrates activations and needs CalibrationData (an .npz or .npy file); Quantize=\"int8-dynamic\" needs none");
            }

            var w = new JsonWriter().StartObject();
            var evaluation = Get("EvaluationData");
            if (calibration is not null || evaluation is not null)
            {
                w.Key("data").StartObject();
                if (calibration is not null)
                {
                    w.Key("calibration").StartObject().Property("path", Path.GetFullPath(Path.Combine(baseDirectory, calibration)));
                    if (Get("CalibrationSamples") is { } samples)
                    {
                        if (!int.TryParse(samples, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n < 1)
                        {
                            throw Invalid($"CalibrationSamples=\"{samples}\" must be a positive whole number");
                        }

                        w.Property("samples", n);
                    }

                    w.EndObject();
                }

                if (evaluation is not null)
                {
                    w.Key("evaluation").StartObject().Property("path", Path.GetFullPath(Path.Combine(baseDirectory, evaluation)));
                    if (Get("Labels") is { } labels)
                    {
                        w.Property("labels", labels);
                    }

                    w.EndObject();
                }

                w.EndObject();
            }

            w.Key("steps").StartArray();
            if (sparsity is not null)
            {
                w.StartObject().Key("prune").StartObject()
                    .Property("method", Methods.MagnitudeMethod.Name).Property("sparsity", Fraction("Sparsity", sparsity, open: true)).Property("scope", "global")
                    .EndObject().EndObject();
            }

            if (quantize is not null)
            {
                w.StartObject().Key("quantize").StartObject();
                switch (quantize)
                {
                    case "int8": w.Property("weights", "int8").Property("activations", "uint8"); break;
                    case "int8-dynamic": w.Property("weights", "int8").Property("activations", "dynamic"); break;
                    case "int8-weights": w.Property("weights", "int8").Property("activations", "none").Property("blockSize", 32); break;
                    case "int4": w.Property("weights", "int4").Property("activations", "none").Property("blockSize", 32); break;
                    default: w.Property("weights", "fp16"); break;
                }

                w.EndObject().EndObject();
            }

            w.EndArray();
            var drop = Get("MaxAccuracyDrop");
            var agreement = Get("MinAgreement");
            if (drop is not null || agreement is not null)
            {
                w.Key("constraints").StartObject();
                if (drop is not null)
                {
                    w.Property("maxAccuracyDrop", Fraction("MaxAccuracyDrop", drop, open: false));
                }

                if (agreement is not null)
                {
                    w.Property("minAgreement", Fraction("MinAgreement", agreement, open: false));
                }

                w.EndObject();
            }

            return w.EndObject().ToString();
        }
    }
}
