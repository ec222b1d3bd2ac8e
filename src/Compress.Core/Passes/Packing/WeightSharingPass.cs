using Compress.Core.Onnx;
using Compress.Core.Passes.Quantization;
using Compress.Core.Passes.SecondOrder;
using Compress.Core.Plans;
using Compress.Core.Torch;
using Compress.Spec;
using Compress.Spec.Methods;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Passes.Packing;

/// <summary>
/// <c>pack.method: "kmeans"</c>: Deep Compression's weight sharing (algorithms.md §17). Each selected layer's kept
/// (nonzero) weights are clustered into 2^bits shared values (<see cref="ScalarKMeans"/>; the bits are the step's or
/// an allocation's per layer), and with calibration data the codebook is refitted to the layer's output
/// (<see cref="CodebookRefit"/>), layer by layer in graph order on one sequential pass so each layer sees the earlier
/// ones shared. Pruned weights stay exactly zero. The model keeps float32 weights with at most 2^bits distinct nonzero
/// values; the format's writer (<see cref="PackedArtifact"/>) turns them into codebook + rANS-coded indices.
/// </summary>
[ImplementsMethod(KmeansMethod.Name)]
public sealed class WeightSharingPass(PackStep step) : ICompressionPass
{
    public string Name => $"pack/{step.Method}";

    public void Apply(CompressionContext context)
    {
        TorchRuntime.EnsureLoaded();
        if (step.Refine == true && !context.HasCalibration)
        {
            throw Spec.SpecLoader.At(context.Spec, step.Line, step.Column, SpecCodes.Inconsistent,
                "'refine' fits each layer's codebook to its output on calibration data: set data.calibration.path, or leave 'refine' out");
        }

        var uses = WeightSelection.Select(context.Model.Graph, step).GroupBy(u => u.Weight.Name).Select(g => g.First()).ToList();
        if (uses.Count == 0)
        {
            context.Notes.Add($"pack: no {string.Join("/", step.OpTypes)} float weights selected; nothing shared");
            return;
        }

        var refine = step.Refine ?? context.HasCalibration;
        var allocated = context.Plan.IsAllocated(step);
        using var sequential = refine ? context.Layerwise(Name) : null;
        double before = 0, after = 0;
        for (var i = 0; i < uses.Count; i++)
        {
            using var scope = NewDisposeScope();
            var use = uses[i];
            var bits = context.Plan.For(step, use.Weight.Name).Bits ?? step.Bits;
            var weight = context.Model.ToTorch(use.Weight);
            var flat = weight.flatten();
            var kept = flat.ne(0);
            if (!kept.any().item<bool>())
            {
                continue;
            }

            context.Progress($"{Name}: {use.NodeName} ({i + 1}/{uses.Count}), {bits} bits");
            var (centroids, assignment) = ScalarKMeans.Fit(flat[kept], 1 << bits);
            if (refine)
            {
                var clusters = zeros(flat.shape[0], ScalarType.Int64).index_put_(assignment + 1, kept);
                var matrix = LayerMatrix.ToMatrix(weight, use);
                var (refitted, b, a) = CodebookRefit.Fit(matrix, LayerMatrix.ToMatrix(clusters.reshape(weight.shape), use), LayerHessian.Compute(context, use), centroids);
                (centroids, before, after) = (refitted, before + b, after + a);
            }

            var shared = zeros_like(flat).index_put_(centroids.to_type(ScalarType.Float32)[assignment], kept);
            shared = where(shared.ne(0), shared, 0f).reshape(weight.shape); // +0.0 only: a zero is a pruned weight
            var record = context.Layer(use.Weight.Name, use.NodeName, use.Node.OpType, flat.shape[0]);
            record.Sparsity = 1 - (shared.count_nonzero().item<long>() / (double)flat.shape[0]);
            record.RelativeError += WeightQuantization.RelativeError(weight, shared);
            record.Format = new WeightFormat(WeightEncoding.SharedCodebook, bits) { Rounding = refine ? "k-means + least squares" : "k-means" };
            if (!allocated)
            {
                context.Plan.Record(step, new LayerPlan(use.Weight.Name, PlanSource.Step) { Bits = bits });
            }

            context.Model.ReplaceData(use.Weight, shared.ToOnnx(use.Weight.Name));
            context.Frontier?.SetWeight(use.Weight.Name, shared);
        }

        if (refine)
        {
            context.Notes.Add(FormattableString.Invariant(
                $"{Name}: codebooks refitted by least squares on the calibration data: the layers' summed output error ‖(W − Ŵ)X‖² is {(before - after) / Math.Max(before, 1e-30):P1} lower than with the k-means centroids"));
        }
    }
}
