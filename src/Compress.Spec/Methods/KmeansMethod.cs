namespace Compress.Spec.Methods
{
    /// <summary>
    /// <c>pack.method: "kmeans"</c> (algorithms.md §17): per layer, k-means on the kept weights from a linear
    /// initialisation, the codebook refitted by least squares on the layer's output error where calibration data is given.
    /// </summary>
    public static class KmeansMethod
    {
        public const string Name = "kmeans";

        public static readonly MethodDescriptor Descriptor = new MethodDescriptor(
            Name,
            StepKind.Pack,
            "k-means weight sharing (linear initialisation; codebook refitted by least squares on calibration data), rANS-coded",
            MethodData.None,
            ModelFormat.Onnx,
            opTypes: PruneOps.Weighted,
            touches: PruneOps.Weighted);
    }
}
