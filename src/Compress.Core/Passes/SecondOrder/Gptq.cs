using Compress.Core.Passes.Quantization;
using Compress.Spec;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Passes.SecondOrder;

/// <summary>
/// GPTQ (algorithms.md §4) for the weight-only quantizer: the layer's input Hessian from the calibration data, then
/// layer-wise OBS rounding onto the b-bit grid with one grid per MatMulNBits block (group = <c>blockSize</c>).
/// Zeros left by an earlier prune step stay zero. The layer's output error on the calibration data comes back too, for
/// the int4 → int8 fallback.
/// </summary>
public static class Gptq
{
    /// <param name="matrix">[N, K] (rows = output columns of the MatMul).</param>
    /// <param name="actOrder">Columns by descending Hessian diagonal (the step's <c>actOrder</c>, or the int4 default).</param>
    /// <param name="measureError">Whether to measure the output error (it keeps a copy of the Hessian while rounding).</param>
    /// <returns>
    /// Codes [N, K] and scales, zero points [N, blocks, 1], all float; and, when asked, the layer's relative output error
    /// on the calibration data, ‖(W − Ŵ)·X‖² / ‖W·X‖² = tr(ΔW·H·ΔWᵀ) / tr(W·H·Wᵀ) with H = X·Xᵀ.
    /// </returns>
    public static (Tensor Codes, Tensor Scales, Tensor Zeros, double? OutputError) Quantize(
        CompressionContext context, WeightUse use, Tensor matrix, IntegerGrid grid, QuantizeStep step, bool actOrder, bool measureError)
    {
        var options = new ObsOptions { Grid = grid, GroupSize = step.BlockSize, ActOrder = actOrder, Damping = step.Damping };
        var hessians = LayerHessian.Compute(context, use);
        var hessian = hessians[0];
        hessians.Dispose(); // the run takes the layer's Hessian over and releases it once factored
        using var kept = measureError ? hessian.clone() : null; // the run factors its own copy in place
        var (_, codes) = LayerObs.Run(matrix, hessian, options, takeOver: true);
        var scales = codes!.Scales.unsqueeze(2);
        var zeros = codes.Zeros.unsqueeze(2);
        double? error = null;
        if (kept is not null)
        {
            var original = matrix.to_type(kept.dtype);
            var rounded = IntegerGrid.Unblocks(IntegerGrid.Dequantize(IntegerGrid.Blocks(codes.Codes, step.BlockSize), scales, zeros), matrix.shape[1]);
            var delta = original - rounded.to_type(kept.dtype);
            var signal = (original.matmul(kept) * original).sum().item<double>();
            error = signal <= 0 ? 0 : (delta.matmul(kept) * delta).sum().item<double>() / signal;
        }

        context.Progress($"gptq: {use.NodeName} ({matrix.shape[0]}×{matrix.shape[1]})" + (error is { } e ? $": output error {e:P2}" : ""));
        return (codes.Codes, scales, zeros, error);
    }

    /// <summary>
    /// GPTQ onto QDQ's symmetric int8 grid (−127…127, zero point 0) with the scales already chosen: one per output
    /// channel (or one for the tensor). Returns the int8 weight in its own layout. Conv groups get their own Hessians.
    /// </summary>
    public static Tensor QuantizeInt8(CompressionContext context, WeightUse use, Tensor weight, Tensor scales, QuantizeStep step)
    {
        context.Progress($"gptq: {use.NodeName} ({string.Join("×", weight.shape)})");
        var hessian = LayerHessian.Compute(context, use);
        var matrix = LayerMatrix.ToMatrix(weight, use);
        var rows = matrix.shape[0];
        var rowScales = (scales.numel() == 1 ? scales.expand(rows) : scales).reshape(rows, 1).to_type(ScalarType.Float32);
        var grid = new IntegerGrid(8, Symmetric: true, NarrowRange: true);
        var codes = LayerObs.PerGroup(matrix, hessian, (groupRows, h, first) =>
        {
            var slice = rowScales.narrow(0, first, groupRows.shape[0]);
            var options = new ObsOptions
            {
                Grid = grid, GroupSize = (int)matrix.shape[1], ActOrder = step.ActOrder, Damping = step.Damping,
                FixedGrid = (slice, full_like(slice, 128)),
            };
            return LayerObs.Run(groupRows, h, options, takeOver: true).Codes!.Codes;
        });
        return LayerMatrix.FromMatrix(codes - 128, use).to_type(ScalarType.Int8);
    }
}
