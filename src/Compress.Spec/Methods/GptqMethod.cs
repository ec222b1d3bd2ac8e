namespace Compress.Spec.Methods
{
    /// <summary><c>quantize.method: "gptq"</c> (algorithms.md §4): rounding with OBS error compensation from the input Hessian.</summary>
    public static class GptqMethod
    {
        public const string Name = "gptq";

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
            },
            schemes: new[] { QuantizeSchemes.MatMulNBits, QuantizeSchemes.StaticQdq });
    }
}
