using System.Collections.Generic;

namespace Compress.Spec.Methods
{
    /// <summary><c>factorize</c>: Conv/Gemm/MatMul weights W ≈ B·A of a lower rank, chosen by an energy threshold and/or a parameter budget.</summary>
    internal sealed class FactorizeKind : StepKind
    {
        public FactorizeKind()
            : base("factorize", "factorization", SvdMethod.Name, new[] { "method", "energy", "parameterRatio" }, new Dictionary<string, string[]>())
        {
        }

        internal override SpecStep Read(SpecValues values, JsonNode node, MethodDescriptor method, string written)
        {
            var step = new FactorizeStep
            {
                Method = written,
                Energy = values.OptionalNumber(node, "energy", 0.5, 1) ?? 0.999,
                ParameterRatio = values.OptionalNumber(node, "parameterRatio", 0.01, 1),
            };
            RefuseOptionsNotTaken(values, node, method, written);
            ReadOptions(values, node, method, step);
            return step;
        }
    }
}
