namespace Compress.Spec.Methods
{
    /// <summary>
    /// <c>quantize.method: "gptq"</c> (algorithms.md §4): rounding with OBS error compensation from the input Hessian. Also
    /// what an int4 weight-only step that names no method runs, with act-order, when the spec has calibration data.
    /// </summary>
    public static class GptqMethod
    {
        public const string Name = "gptq";

        /// <summary>The default bound of <c>maxLayerError</c>.</summary>
        public const double MaxLayerError = 0.02;

        public static readonly MethodDescriptor Descriptor = new MethodDescriptor(
            Name,
            StepKind.Quantize,
            "weight-only int4/int8 or static int8 with OBS error compensation",
            MethodData.Activations,
            ModelFormat.Onnx,
            options: new[]
            {
                MethodOption.Boolean("actOrder", false, "columns by descending Hessian diagonal"),
                MethodOption.Number("damping", 0.01, 1e-9, 1, "fraction of the mean Hessian diagonal added to it"),
                MethodOption.Number("maxLayerError", MaxLayerError, 0, 1,
                    "int4 weight-only: a layer whose relative output error on the calibration data, ‖ΔW·X‖² / ‖W·X‖², stays above this is stored int8"),
            },
            schemes: new[] { QuantizeSchemes.MatMulNBits, QuantizeSchemes.StaticQdq });
    }
}
