namespace Compress.Spec.Methods
{
    /// <summary>The operators whose weights the pruning methods take, and their default <c>opTypes</c>.</summary>
    public static class PruneOps
    {
        public static readonly string[] Weighted = { "Conv", "Gemm", "MatMul" };
    }
}
