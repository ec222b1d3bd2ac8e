namespace Compress.Spec.Methods
{
    /// <summary><c>quantize.method: "rtn"</c> (algorithms.md §5, §11): round to nearest on the scheme's grid.</summary>
    public static class RtnMethod
    {
        public const string Name = "rtn";

        public static readonly MethodDescriptor Descriptor = new MethodDescriptor(
            Name,
            StepKind.Quantize,
            "round to nearest",
            MethodData.None,
            ModelFormat.All,
            schemes: new[] { QuantizeSchemes.StaticQdq, QuantizeSchemes.DynamicMatMul, QuantizeSchemes.MatMulNBits, QuantizeSchemes.Float16 });
    }
}
