using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Passes.SecondOrder;
using Compress.Core.Torch;
using Compress.Spec;
using Compress.Spec.Methods;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Passes.Factorization;

/// <summary>
/// <c>factorize</c> with <c>svd</c> (algorithms.md §16): each selected Gemm/MatMul weight W [out, in] becomes two
/// smaller ones, x·Aᵀ then ·Bᵀ (+ the original bias), by activation-aware SVD: with the layer's input second moment
/// C = E[xxᵀ] on the calibration data (damped by 1% of its mean diagonal) = LLᵀ, W·L = UΣVᵀ truncated to rank r gives
/// A = Σ_r^½ V_rᵀ L⁻¹ and B = U_r Σ_r^½, which minimise the layer's output error E‖(W − BA)x‖² rather than ‖W − BA‖
/// (SVD-LLM). r is the smallest rank keeping <c>energy</c> of Σσ², at most the <c>parameterRatio</c> budget, rounded
/// up to a multiple of 8; a layer is factorized only where r(in + out) ≤ ¾·in·out, so the model gets smaller and the
/// two kernels cost less than the one.
/// Layers go in graph order, each measured on the model as the layers before it left it.
/// </summary>
[ImplementsMethod(SvdMethod.Name)]
public sealed class LowRankFactorizer(FactorizeStep step) : ICompressionPass
{
    private const long Multiple = 8;

    /// <summary>
    /// A layer is factorized only where the two factors keep at most this share of its weights: less saving does not
    /// pay for the second kernel (and on the MLP, the 10×100 head at rank 8 cost 5 points for 12% of its weights).
    /// </summary>
    private const double MaxShare = 0.75;

    public string Name => $"factorize/{step.Method}";

    public void Apply(CompressionContext context)
    {
        TorchRuntime.EnsureLoaded();
        var graph = context.Model.Graph;
        var uses = WeightSelection.Select(graph, step)
            .Where(u => u.Weight.Dims.Count == 2 && WeightSelection.IsPlainMatMul(u.Node) && graph.GetConsumers(u.Weight.Name).Count == 1)
            .ToList();
        var done = new List<string>();
        var kept = new List<string>();
        foreach (var use in uses)
        {
            using var scope = NewDisposeScope();
            var matrix = LayerMatrix.ToMatrix(context.Model.ToTorch(use.Weight), use).to_type(ScalarType.Float64); // [out, in]
            var (outputs, inputs) = (matrix.shape[0], matrix.shape[1]);
            context.Progress($"{Name}: {use.NodeName} [{outputs}×{inputs}]");
            var moment = LayerHessian.Compute(context, use)[0].to_type(ScalarType.Float64);
            moment.add_(eye(inputs, dtype: ScalarType.Float64).mul(0.01 * moment.diagonal().mean().item<double>() + 1e-12));
            var lower = linalg.cholesky(moment);
            var (u, s, vh) = linalg.svd(matrix.mm(lower), fullMatrices: false);
            var rank = Rank(s, outputs, inputs);
            if (rank * (inputs + outputs) > MaxShare * inputs * outputs)
            {
                kept.Add($"{use.NodeName} (rank {rank} would keep {rank * (inputs + outputs) / (double)(inputs * outputs):P0} of its weights)");
                continue;
            }

            var root = s.narrow(0, 0, rank).sqrt();
            var b = u.narrow(1, 0, rank).mul(root.unsqueeze(0)); // [out, r]
            var scaled = vh.narrow(0, 0, rank).mul(root.unsqueeze(1)); // [r, in] = Σ½ Vᵀ
            var a = linalg.solve(lower.t(), scaled.t()).t(); // Σ½ Vᵀ L⁻¹
            var error = matrix.sub(b.mm(a)).square().sum().div(matrix.square().sum().clamp_min(1e-30)).item<double>();
            Replace(context, use, a.to_type(ScalarType.Float32), b.to_type(ScalarType.Float32), error);
            done.Add($"{use.NodeName} {outputs}×{inputs} → rank {rank} ({rank * (inputs + outputs) / (double)(inputs * outputs):P0} of the weights)");
        }

        if (kept.Count > 0)
        {
            context.Notes.Add($"{Name}: left as they were: {string.Join("; ", kept)}");
        }

        if (done.Count > 0)
        {
            context.Notes.Add($"{Name}: {string.Join("; ", done)}");
        }
    }

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

    /// <summary>The node becomes two of its kind: x·Aᵀ into a new value, then ·Bᵀ with the bias into the original output.</summary>
    private void Replace(CompressionContext context, WeightUse use, Tensor a, Tensor b, double error)
    {
        var graph = context.Model.Graph;
        var node = use.Node;
        var name = use.Weight.Name;
        var aName = graph.UniqueName(name + "_lowrank_a");
        var bName = graph.UniqueName(name + "_lowrank_b");
        var hidden = graph.UniqueName(node.Output[0] + "_lowrank");
        NodeProto first, second;
        if (node.OpType == "Gemm")
        {
            graph.AddInitializer(a.contiguous().ToOnnx(aName)); // [r, in], transB
            graph.AddInitializer(b.contiguous().ToOnnx(bName)); // [out, r], transB
            first = new NodeProto { OpType = "Gemm", Name = graph.UniqueName(OnnxGraph.Describe(node) + "_a") };
            first.Input.Add([node.Input[0], aName]);
            first.Output.Add(hidden);
            first.Attribute.Add(OnnxAttribute.Int("transB", 1));
            second = new NodeProto { OpType = "Gemm", Name = OnnxGraph.Describe(node) };
            second.Input.Add(hidden);
            second.Input.Add(bName);
            second.Input.Add(node.Input.Skip(2));
            second.Output.Add(node.Output);
            second.Attribute.Add(OnnxAttribute.Int("transB", 1));
        }
        else
        {
            graph.AddInitializer(a.t().contiguous().ToOnnx(aName)); // [in, r]
            graph.AddInitializer(b.t().contiguous().ToOnnx(bName)); // [r, out]
            first = new NodeProto { OpType = "MatMul", Name = graph.UniqueName(OnnxGraph.Describe(node) + "_a") };
            first.Input.Add([node.Input[0], aName]);
            first.Output.Add(hidden);
            second = new NodeProto { OpType = "MatMul", Name = OnnxGraph.Describe(node) };
            second.Input.Add([hidden, bName]);
            second.Output.Add(node.Output);
        }

        var record = context.Layer(name, OnnxGraph.Describe(node), node.OpType, OnnxElementTypes.ElementCount(use.Weight.Dims));
        graph.Replace(node, first, second);
        graph.RemoveInitializerIfUnused(name);
        record.Store(aName, bName);
        record.RelativeError += error;
    }
}
