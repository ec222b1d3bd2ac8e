using Compress.Core.Execution;
using Compress.Core.Onnx;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Passes.SecondOrder;

/// <summary>
/// Dense targets for the layer-wise pruners ("asymmetric calibration", OBC's sequential variant, GPTAQ): a layer's
/// input X̃ comes from the model with the earlier layers already pruned, and instead of reproducing the layer's
/// response to X̃ (‖WX̃ − ŴX̃‖) the layer reproduces its response in the uncompressed model, ‖WX − ŴX̃‖, X its input
/// there on the same samples. By orthogonality ‖WX − ŴX̃‖² = ‖WX − W'X̃‖² + ‖W'X̃ − ŴX̃‖² with W' the least-squares
/// refit of the dense response onto X̃, so the layer is first refitted to W' and OBS then runs on W' with H̃ as before.
/// The refit is ridge-damped towards W with OBS's damping λ = damping·mean(diag H̃):
/// W' = argmin ‖WX − W'X̃‖² + λ/2·n‖W' − W‖² = W + W·D·(H̃ + λI)⁻¹, D = (2/n)(X − X̃)X̃ᵀ,
/// so a layer whose input is still the dense one (the first) comes out exactly unchanged.
/// X comes from a second frontier over the model as it was when the step started, advanced in lockstep.
/// </summary>
public sealed class DenseTargets : IDisposable
{
    /// <summary>Models with more weight bytes than this skip the correction (a second frontier holds a copy of the weights).</summary>
    public const long MaxWeightBytes = 200L << 20;

    private readonly LayerFrontier _dense;

    private DenseTargets(LayerFrontier dense) => _dense = dense;

    /// <summary>
    /// The dense frontier for the step, or null (with a note) when the correction cannot run: no sequential pass
    /// (layer inputs from ONNX Runtime), weights too large to hold twice, or a model the executor cannot run.
    /// Call inside <see cref="CompressionContext.Layerwise"/>, before any layer is pruned.
    /// </summary>
    public static DenseTargets? TryStart(CompressionContext context, string method)
    {
        if (context.Frontier is null)
        {
            context.Notes.Add($"{method}: dense targets skipped (layer inputs come from ONNX Runtime, not the sequential pass)");
            return null;
        }

        var bytes = context.Model.Proto.Graph.Initializer.Sum(t => (long)OnnxElementTypes.ElementCount(t.Dims) * 4);
        if (bytes > MaxWeightBytes)
        {
            context.Notes.Add($"{method}: dense targets skipped ({bytes >> 20} MB of weights: the dense copy would hold them twice; at most {MaxWeightBytes >> 20} MB)");
            return null;
        }

        var dense = LayerFrontier.TryCreate(context.Model, context.Calibration, out var why);
        if (dense is null)
        {
            context.Notes.Add($"{method}: dense targets skipped ({why})");
            return null;
        }

        return new DenseTargets(dense);
    }

    /// <summary>
    /// H̃ = (2/n) X̃X̃ᵀ and D = (2/n)(X − X̃)X̃ᵀ for <paramref name="use"/>, [groups, cols, cols] each (im2col rows per Conv
    /// group), both frontiers advanced to the layer; null when either frontier cannot give the layer's input (the
    /// caller then falls back to the plain Hessian).
    /// </summary>
    public (Tensor Hessian, Tensor Shift)? Compute(CompressionContext context, WeightUse use)
    {
        var node = use.Node;
        var dense = _dense.InputOf(node);
        var perturbed = context.Frontier?.InputOf(node);
        if (dense is null || perturbed is null || dense.Count != perturbed.Count)
        {
            return null;
        }

        var geometry = ConvGeometry.Of(use);
        var cols = LayerMatrix.Columns(use);
        var groups = geometry?.Groups ?? 1;
        var precision = cols >= LayerHessian.SinglePrecisionColumns ? ScalarType.Float32 : ScalarType.Float64;
        var hessian = zeros([groups, cols, cols], precision);
        var shift = zeros([groups, cols, cols], precision);
        long rows = 0;
        for (var c = 0; c < dense.Count; c++)
        {
            var all = perturbed[c];
            var reference = dense[c];
            if (!all.shape.SequenceEqual(reference.shape))
            {
                hessian.Dispose();
                shift.Dispose();
                return null;
            }

            var perSample = Math.Max(1, all.numel() / Math.Max(1, all.shape[0]) * (geometry?.KernelArea ?? 1) * sizeof(float));
            var batch = node.OpType == "Gemm" && node.Int("transA", 0) == 1 ? all.shape[0] : Math.Clamp((32L << 20) / perSample, 1, 64);
            for (long start = 0; start < all.shape[0]; start += batch)
            {
                using var scope = NewDisposeScope();
                var count = Math.Min(batch, all.shape[0] - start);
                var x = Rows(all.narrow(0, start, count), node, geometry);
                var delta = Rows(reference.narrow(0, start, count), node, geometry) - x; // X − X̃, rows as samples (not in place: the rows may be a view of the frontier's values)
                rows += x.shape[1];
                hessian.add_(x.transpose(1, 2).bmm(x).to_type(precision));
                shift.add_(delta.transpose(1, 2).bmm(x).to_type(precision));
            }
        }

        if (rows == 0)
        {
            hessian.Dispose();
            shift.Dispose();
            return null;
        }

        LayerHessian.NoteRank(context, use, rows, cols);
        hessian.mul_(2.0 / rows);
        shift.mul_(2.0 / rows);
        return (hessian, shift);
    }

    /// <summary>
    /// W' = W + W·D·(H̃ + λI)⁻¹ per group (rows of <paramref name="matrix"/> split evenly over the groups), λ =
    /// <paramref name="damping"/>·mean(diag H̃); weights that are zero already stay zero. A zero D leaves W as it is.
    /// </summary>
    public static Tensor Refit(Tensor matrix, Tensor hessian, Tensor shift, double damping)
    {
        var groups = hessian.shape[0];
        var rows = matrix.shape[0] / groups;
        var parts = new List<Tensor>();
        for (long g = 0; g < groups; g++)
        {
            var w = matrix.narrow(0, g * rows, rows);
            var d = shift[g].to_type(ScalarType.Float64);
            if (d.abs().max().ToDouble() == 0)
            {
                parts.Add(w.clone());
                continue;
            }

            var h = hessian[g].to_type(ScalarType.Float64).clone();
            var dead = h.diagonal().eq(0);
            h.diagonal().masked_fill_(dead, 1);
            var mean = h.diagonal().mean().ToDouble();
            h.diagonal().add_(damping * mean);
            var w64 = w.to_type(ScalarType.Float64);
            // (W·D·H⁻¹)ᵀ = H⁻¹·Dᵀ·Wᵀ (H symmetric)
            var correction = linalg.solve(h, d.t().mm(w64.t())).t();
            var refit = (w64 + correction).to_type(ScalarType.Float32);
            parts.Add(refit.masked_fill_(w.eq(0), 0f));
        }

        return cat(parts, 0);
    }

    /// <summary>[groups, rows, cols] input rows of a Gemm/MatMul (one group) or a Conv's im2col patches.</summary>
    private static Tensor Rows(Tensor x, Onnx.Proto.NodeProto node, ConvGeometry? geometry)
    {
        if (geometry is not null)
        {
            return geometry.Im2Col(x);
        }

        if (node.OpType == "Gemm" && node.Int("transA", 0) == 1)
        {
            x = x.t();
        }

        return x.reshape(1, -1, x.shape[^1]);
    }

    public void Dispose() => _dense.Dispose();
}
