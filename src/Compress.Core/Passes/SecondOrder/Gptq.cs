using Compress.Core.Passes.Quantization;
using Compress.Spec;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Passes.SecondOrder;

/// <summary>
/// GPTQ (algorithms.md §4) for the weight-only quantizer: the layer's input Hessian from the calibration data, then
/// layer-wise OBS rounding onto the b-bit grid with one grid per MatMulNBits block (group = <c>blockSize</c>).
/// Zeros left by an earlier prune step stay zero.
/// </summary>
public static class Gptq
{
    /// <param name="matrix">[N, K] (rows = output columns of the MatMul).</param>
    /// <returns>Codes [N, K] and scales, zero points [N, blocks, 1], all float.</returns>
    public static (Tensor Codes, Tensor Scales, Tensor Zeros) Quantize(CompressionContext context, WeightUse use, Tensor matrix, IntegerGrid grid, QuantizeStep step)
    {
        context.Progress($"gptq: {use.NodeName} ({matrix.shape[0]}×{matrix.shape[1]})");
        using var hessian = LayerHessian.Compute(context, use);
        var options = new ObsOptions { Grid = grid, GroupSize = step.BlockSize, ActOrder = step.ActOrder, Damping = step.Damping };
        var (_, codes) = LayerObs.Run(matrix, hessian[0], options);
        return (codes!.Codes, codes.Scales.unsqueeze(2), codes.Zeros.unsqueeze(2));
    }
}
