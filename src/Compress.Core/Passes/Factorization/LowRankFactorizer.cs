using Compress.Core.Onnx;
using Compress.Core.Passes.SecondOrder;
using Compress.Core.Torch;
using Compress.Spec;
using Compress.Spec.Methods;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Passes.Factorization;

/// <summary>
/// <c>factorize</c> with <c>svd</c> (algorithms.md §16): each selected layer's weight, as a matrix W [out, in] (a Conv's
/// W [C_out, C_in, kh, kw] as [C_out, C_in·kh·kw]), becomes two smaller ones, A then B (+ the original bias), by
/// activation-aware SVD: with the second moment of the layer's input rows C = E[xxᵀ] on the calibration data (a Conv's
/// rows are its im2col patches), damped by 1% of its mean diagonal, = LLᵀ, W·L = UΣVᵀ truncated to rank r gives
/// A = Σ_r^½ V_rᵀ L⁻¹ and B = U_r Σ_r^½, which minimise the layer's output error E‖(W − BA)x‖² rather than ‖W − BA‖
/// (SVD-LLM). r is the smallest rank keeping <c>energy</c> of Σσ², at most the <c>parameterRatio</c> budget, rounded
/// up to a multiple of 8. A layer is factorized only where its multiply-adds fall to at most ¾: r(in + out) ≤ ¾·in·out
/// per row (Gemm/MatMul) or per output position (Conv: a k×k Conv C_in→r with the original strides, pads and
/// dilations, then a 1×1 Conv r→C_out at the same positions). With <c>constraints.maxLatencyRatio</c> the step also
/// times the whole model at batch 1 and undoes the factorizations measured slower (<see cref="FactorizationLatency"/>).
/// Layers go in graph order, each measured on the model as the layers before it left it.
/// </summary>
[ImplementsMethod(SvdMethod.Name)]
public sealed class LowRankFactorizer(FactorizeStep step) : ICompressionPass
{
    internal const long Multiple = 8;

    /// <summary>
    /// A layer is factorized only where the two factors keep at most this share of its multiply-adds (and weights):
    /// less saving does not pay for the second kernel (and on the MLP, the 10×100 head at rank 8 cost 5 points for 12%
    /// of its weights).
    /// </summary>
    internal const double MaxShare = 0.75;

    /// <inheritdoc />
    public string Name => $"factorize/{step.Method}";

    /// <inheritdoc />
    public void Apply(CompressionContext context)
    {
        TorchRuntime.EnsureLoaded();
        var graph = context.Model.Graph;
        var done = new List<FactorizedLayer>();
        var kept = new List<string>();
        var allocated = context.Plan.IsAllocated(step);
        foreach (var use in LowRankForms.Splittable(graph, step, kept))
        {
            // An allocation's rank (algorithms.md §18), in the channel form; none or 0 keeps the layer whole.
            var planned = allocated ? context.Plan.For(step, use.Weight.Name).Rank : null;
            if (allocated && planned is not > 0)
            {
                kept.Add($"{use.NodeName} ({(planned is null ? "the allocation offered it no rank" : "the allocation keeps it whole")})");
                continue;
            }

            using var scope = NewDisposeScope();
            context.Progress($"{Name}: {use.NodeName}");
            var svd = WhitenedSvd.Of(context, use);
            var shape = use.Node.OpType == "Conv" ? string.Join("×", use.Weight.Dims) : $"{svd.Outputs}×{svd.Inputs}";
            var full = (double)(svd.Inputs * svd.Outputs);
            if (planned is { } r)
            {
                var (fa, fb, ferror) = svd.Truncate(r);
                done.Add(Replace(context, use, fa, fb, ferror,
                    $"{use.NodeName} {shape} → rank {r} by the allocation ({r * (svd.Inputs + svd.Outputs) / full:P0} of the multiply-adds{Per(use)}, output error {svd.OutputError(r):0.####})"));
                continue;
            }

            var rank = Rank(svd.Singular, svd.Outputs, svd.Inputs);
            var channel = new Form("", rank, rank * (svd.Inputs + svd.Outputs) / full, svd.OutputError(rank));
            var spatialSvd = LowRankForms.SpatialRefusal(use) is null ? svd.Spatial(use) : null;
            var spatial = spatialSvd is null ? null : Spatial(spatialSvd, full);
            var chosen = Choose(channel, spatial);
            if (chosen is null)
            {
                var why = $"rank {rank} would keep {channel.Share:P0} of its multiply-adds{Per(use)}";
                if (spatial is not null)
                {
                    why += spatial.Share > MaxShare
                        ? $"; the spatial form's rank {spatial.Rank} {spatial.Share:P0}"
                        : $"; the spatial form's rank {spatial.Rank} misses the error {1 - step.Energy:0.####} ({spatial.OutputError:0.####})";
                }

                kept.Add($"{use.NodeName} ({why})");
                continue;
            }

            var description = $"{use.NodeName} {shape} → {chosen.Label}rank {chosen.Rank} ({chosen.Share:P0} of the multiply-adds{Per(use)}, output error {chosen.OutputError:0.####})";
            if (chosen == channel)
            {
                var (a, b, error) = svd.Truncate(rank);
                done.Add(Replace(context, use, a, b, error, description, spatial: false));
            }
            else
            {
                var (v, h, error) = chosen.Factors!.Value; // the rank search's own truncation, not a second refit
                done.Add(Replace(context, use, v, h, error, description, spatial: true));
            }
        }

        if (context.Spec.Constraints.MaxLatencyRatio is not null && done.Count > 0)
        {
            done = FactorizationLatency.Apply(context, done, Name);
        }

        if (kept.Count > 0)
        {
            context.Notes.Add($"{Name}: left as they were: {string.Join("; ", kept)}");
        }

        if (done.Count > 0)
        {
            context.Notes.Add($"{Name}: {string.Join("; ", done.Select(d => d.Description))}");
        }
    }

    /// <summary>A candidate form at its rank: multiply-adds as a share of the layer's, the whitened output error, and its factors where the search made them.</summary>
    private sealed record Form(string Label, long Rank, double Share, double OutputError, (Tensor V, Tensor H, double Error)? Factors = null);

    /// <summary>
    /// Among the forms within the ¾ rule, those meeting the error of the energy threshold (1 − energy) and of these
    /// the fewest multiply-adds (the channel form on a tie); under a <c>parameterRatio</c> budget, where none meets it,
    /// the smallest error. Null: the layer stays whole.
    /// </summary>
    private Form? Choose(Form channel, Form? spatial)
    {
        var within = new[] { channel, spatial }.OfType<Form>().Where(f => f.Share <= MaxShare).ToList();
        var target = 1 - step.Energy + 1e-12;
        return within.Where(f => f.OutputError <= target).OrderBy(f => f.Share).FirstOrDefault()
            ?? (step.ParameterRatio is null ? null : within.OrderBy(f => f.OutputError).FirstOrDefault());
    }

    /// <summary>
    /// The spatial form's rank: the smallest multiple of 8 whose output error meets 1 − energy, searched up to the ¾
    /// rule (and the budget); the largest searched when none does.
    /// </summary>
    private Form Spatial(SpatialSvd spatial, double full)
    {
        var limit = (long)Math.Floor(MaxShare * full / spatial.MultiplyAdds(1));
        if (step.ParameterRatio is { } ratio)
        {
            limit = Math.Min(limit, Math.Max(1, (long)Math.Floor(ratio * full / spatial.MultiplyAdds(1))));
        }

        limit = Math.Min(Math.Max(Multiple, (limit + Multiple - 1) / Multiple * Multiple), spatial.MaxRank);
        for (var rank = Multiple; ; rank += Multiple)
        {
            using var scope = NewDisposeScope();
            var r = Math.Min(rank, limit);
            var (v, h, error, output) = spatial.Truncate(r);
            if (output <= 1 - step.Energy + 1e-12 || r >= limit)
            {
                return new Form("spatial (kh×1, 1×kw) ", r, spatial.MultiplyAdds(r) / full, output, (v.MoveToOuterDisposeScope(), h.MoveToOuterDisposeScope(), error));
            }
        }
    }

    private static string Per(WeightUse use) => use.Node.OpType == "Conv" ? " per output position" : "";

    /// <summary>The smallest rank keeping <c>energy</c> of Σσ², within the budget, rounded up to a multiple of 8 (at most min(in, out)).</summary>
    private long Rank(Tensor singular, long outputs, long inputs)
    {
        var energy = singular.square().cumsum(0);
        var total = energy[energy.shape[0] - 1].item<double>();
        var rank = energy.lt(step.Energy * total).sum().item<long>() + 1;
        if (step.ParameterRatio is { } ratio)
        {
            rank = Math.Min(rank, Math.Max(1, (long)Math.Floor(ratio * inputs * outputs / (inputs + outputs))));
        }

        return Math.Min((rank + Multiple - 1) / Multiple * Multiple, Math.Min(inputs, outputs));
    }

    /// <summary>The node becomes two (<see cref="LowRankForms"/>): A into a new value, then B with the bias into the original output.</summary>
    internal static FactorizedLayer Replace(CompressionContext context, WeightUse use, Tensor a, Tensor b, double error, string description, bool spatial = false)
    {
        var graph = context.Model.Graph;
        var node = use.Node;
        var name = use.Weight.Name;
        var aName = graph.UniqueName(name + "_lowrank_a");
        var bName = graph.UniqueName(name + "_lowrank_b");
        var hidden = graph.UniqueName(node.Output[0] + "_lowrank");
        var (first, second) = spatial ? LowRankForms.SplitSpatial(graph, use, a, b, aName, bName, hidden) : LowRankForms.Split(graph, use, a, b, aName, bName, hidden);
        var existed = context.Layers.ContainsKey(name);
        var record = context.Layer(name, OnnxGraph.Describe(node), node.OpType, OnnxElementTypes.ElementCount(use.Weight.Dims));
        var storedBefore = record.StoredAs;
        graph.Replace(node, first, second);
        graph.RemoveInitializerIfUnused(name);
        record.Store(aName, bName);
        record.RelativeError += error;
        return new FactorizedLayer(use.NodeName, node, use.Weight, first.Name, second.Name, aName, bName, error, existed, storedBefore, description);
    }
}

/// <summary>
/// A layer's whitened SVD (algorithms.md §16): W [out, in] as a matrix, C = E[xxᵀ] of its input rows (im2col patches
/// for a Conv) + 1% of the mean diagonal = LLᵀ, and W·L = UΣVᵀ; float64 throughout.
/// </summary>
internal sealed class WhitenedSvd
{
    private readonly Tensor _matrix;
    private readonly Tensor _moment;
    private readonly Tensor _lower;
    private readonly Tensor _u;
    private readonly Tensor _vh;

    private WhitenedSvd(Tensor matrix, Tensor moment, Tensor lower, Tensor u, Tensor singular, Tensor vh)
    {
        (_matrix, _moment, _lower, _u, Singular, _vh) = (matrix, moment, lower, u, singular, vh);
    }

    /// <summary>Σ, largest first.</summary>
    public Tensor Singular { get; }

    public long Outputs => _matrix.shape[0];

    public long Inputs => _matrix.shape[1];

    /// <summary>The layer's weight and input moment on the calibration data, in the context's current model (tensors in the caller's dispose scope).</summary>
    public static WhitenedSvd Of(CompressionContext context, WeightUse use)
    {
        var matrix = LayerMatrix.ToMatrix(context.Model.ToTorch(use.Weight), use).to_type(ScalarType.Float64); // [out, in(·kh·kw)]
        var moment = LayerHessian.Compute(context, use)[0].to_type(ScalarType.Float64);
        moment.add_(eye(matrix.shape[1], dtype: ScalarType.Float64).mul(0.01 * moment.diagonal().mean().item<double>() + 1e-12));
        var lower = linalg.cholesky(moment);
        var (u, s, vh) = linalg.svd(matrix.mm(lower), fullMatrices: false);
        return new WhitenedSvd(matrix, moment, lower, u, s, vh);
    }

    /// <summary>The output error at rank r, tr(ΔW·C·ΔWᵀ) / tr(W·C·Wᵀ) = Σ_{k>r} σ_k² / Σ σ_k².</summary>
    public double OutputError(long rank)
    {
        var energy = Singular.square();
        return energy.narrow(0, rank, energy.shape[0] - rank).sum().item<double>() / Math.Max(1e-300, energy.sum().item<double>());
    }

    /// <summary>The same Conv weight and moment in the spatial form (<see cref="SpatialSvd"/>).</summary>
    public SpatialSvd Spatial(WeightUse use) => SpatialSvd.Of(_matrix, _moment, use.Weight.Dims.ToArray());

    /// <summary>A = Σ_r^½ V_rᵀ L⁻¹ [r, in] and B = U_r Σ_r^½ [out, r] in float32, and ‖W − BA‖² / ‖W‖².</summary>
    public (Tensor A, Tensor B, double Error) Truncate(long rank)
    {
        var root = Singular.narrow(0, 0, rank).sqrt();
        var b = _u.narrow(1, 0, rank).mul(root.unsqueeze(0));
        var scaled = _vh.narrow(0, 0, rank).mul(root.unsqueeze(1)); // Σ½ Vᵀ
        var a = linalg.solve(_lower.t(), scaled.t()).t(); // Σ½ Vᵀ L⁻¹
        var error = _matrix.sub(b.mm(a)).square().sum().div(_matrix.square().sum().clamp_min(1e-30)).item<double>();
        return (a.to_type(ScalarType.Float32), b.to_type(ScalarType.Float32), error);
    }
}

/// <summary>One layer the step factorized: what it was (to undo it), and the two nodes and factors it became.</summary>
internal sealed record FactorizedLayer(
    string Node,
    Onnx.Proto.NodeProto Original,
    Onnx.Proto.TensorProto Weight,
    string First,
    string Second,
    string A,
    string B,
    double Error,
    bool RecordExisted,
    IReadOnlyList<string> StoredBefore,
    string Description)
{
    /// <summary>Puts the original node and weight back in place of the two factors (in <paramref name="model"/>, by node name).</summary>
    public void Undo(OnnxModel model)
    {
        var graph = model.Graph;
        var first = graph.Nodes.Single(n => n.Name == First);
        var second = graph.Nodes.Single(n => n.Name == Second);
        graph.Replace(first, Original.Clone());
        graph.Remove(second);
        graph.RemoveInitializer(A);
        graph.RemoveInitializer(B);
        graph.AddInitializer(Weight.Clone());
    }
}
