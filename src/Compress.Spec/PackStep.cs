using Compress.Spec.Methods;

namespace Compress.Spec
{
    /// <summary><c>{ "pack": { "bits": 5 } }</c>: weight sharing and entropy coding; the last step of a spec.</summary>
    public sealed class PackStep : SpecStep
    {
        /// <summary>The packed artifact (<c>.cpack</c>), expanded in memory by Compress.Runtime.</summary>
        public const string PackedFormat = "cpack";

        /// <summary>A plain ONNX model: codebook + uint8 indices + <c>Gather</c>, constant-folded by ONNX Runtime at load.</summary>
        public const string OnnxFormat = "onnx";

        public override string Kind => "pack";

        public override string Method { get; set; } = KmeansMethod.Name;

        /// <summary>log2 of the shared values per layer (2–8) unless an allocation set the layer's bits.</summary>
        public int Bits { get; set; } = 5;

        /// <summary><see cref="PackedFormat"/> or <see cref="OnnxFormat"/>.</summary>
        public string Format { get; set; } = PackedFormat;

        /// <summary>Least-squares refit of the codebook on the calibration data: null = when the spec has calibration data.</summary>
        public bool? Refine { get; set; }
    }
}
