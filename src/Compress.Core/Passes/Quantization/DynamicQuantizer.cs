using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Torch;
using Compress.Spec;
using Compress.Spec.Methods;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Passes.Quantization;

/// <summary>
/// Dynamic int8 for MatMul/Gemm-heavy models: weights int8 (symmetric, per output column or per tensor), activations
/// quantized at run time. Each MatMul(A, W) or Gemm(A, W, C) with alpha = beta = 1 and no transA becomes ONNX
/// Runtime's com.microsoft DynamicQuantizeMatMul(A, W_int8[K, N], scale, [no zero point: symmetric], bias).
/// </summary>
[ImplementsMethod(RtnMethod.Name, Scheme = QuantizeSchemes.Dynamic)]
public sealed class DynamicQuantizer(QuantizeStep step) : ICompressionPass
{
    public string Name => "quantize/dynamic";

    public void Apply(CompressionContext context)
    {
        TorchRuntime.EnsureLoaded();
        var tables = EmbeddingTables.Quantize(context, step, 8);
        var graph = context.Model.Graph;
        var uses = WeightSelection.Select(graph, step).Where(u => u.Node.OpType is "MatMul" or "Gemm").ToList();
        var converted = 0;
        var stored = new Dictionary<(string Weight, int Axis), (string Codes, string Scales, string First)>();
        foreach (var use in uses)
        {
            var node = use.Node;
            if (!WeightSelection.IsPlainMatMul(node))
            {
                context.Notes.Add($"dynamic: '{use.NodeName}' kept float (Gemm with transA, alpha or beta)");
                continue;
            }

            if (context.Plan.For(step, use.Weight.Name).Bits == 32)
            {
                context.Notes.Add($"dynamic: '{use.NodeName}' kept float (allocated 32 bits)");
                continue;
            }

            if (stored.TryGetValue((use.Weight.Name, use.OutputAxis), out var first) && Replacement(graph, node, first.Codes, first.Scales) is { } shared)
            {
                // A weight read by several nodes in one layout (layers sharing a matrix): its int8 codes are stored once.
                graph.Replace(node, shared);
                graph.RemoveInitializerIfUnused(use.Weight.Name);
                context.Notes.Add($"dynamic: '{use.NodeName}' shares '{use.Weight.Name}' with '{first.First}': the same int8 weight");
                converted++;
                continue;
            }

            using var scope = NewDisposeScope();
            var w = context.Model.ToTorch(use.Weight);
            var kn = use.OutputAxis == 0 ? w.t().contiguous() : w; // [K, N]
            int? axis = step.Granularity == "channel" ? 1 : null;
            var (q, scales) = WeightQuantization.SymmetricInt8(kn, axis);
            var record = context.Layer(use.Weight.Name, use.NodeName, node.OpType, w.numel());
            record.Format = new Plans.WeightFormat(Plans.WeightEncoding.DynamicInt8, 8);
            record.RelativeError += WeightQuantization.RelativeError(kn, WeightQuantization.Dequantize(q, scales, axis));

            var baseName = use.Weight.Name;
            var qName = graph.AddInitializer(q.ToOnnx(graph.UniqueName(baseName + "_quantized"))).Name;
            record.Store(qName);
            var sName = graph.AddInitializer((axis is null ? scales.reshape([]) : scales).ToOnnx(graph.UniqueName(baseName + "_scale"))).Name;
            if (Replacement(graph, node, qName, sName) is not { } replacement)
            {
                context.Notes.Add($"dynamic: '{use.NodeName}' kept float (bias is not a 1-D constant)");
                graph.RemoveInitializer(qName);
                graph.RemoveInitializer(sName);
                continue;
            }

            graph.Replace(node, replacement);
            graph.RemoveInitializerIfUnused(baseName);
            stored.TryAdd((baseName, use.OutputAxis), (qName, sName, use.NodeName));

            converted++;
        }

        if (converted > 0)
        {
            FloatVectors.ToFloat16(context, "dynamic");
        }

        context.Model.RequireOpset("com.microsoft", 1);
        context.Progress($"quantize: dynamic int8 on {converted} MatMul/Gemm nodes" + EmbeddingTables.Describe(tables));
    }

    /// <summary>Whether a plain MatMul or Gemm <paramref name="node"/> has a DynamicQuantizeMatMul form: no bias, or a 1-D constant one.</summary>
    internal static bool Takes(OnnxGraph graph, NodeProto node) =>
        node.OpType != "Gemm" || node.Input.Count < 3 || node.Input[2].Length == 0 || graph.GetInitializer(node.Input[2]) is { Dims.Count: 1 };

    /// <summary>
    /// The DynamicQuantizeMatMul that replaces the plain MatMul or Gemm <paramref name="node"/>, reading the int8
    /// weight <paramref name="weight"/> ([K, N]) and its scales <paramref name="scales"/> (symmetric: no zero point), a
    /// Gemm's bias after the zero point's empty place; null when that bias is not a 1-D constant.
    /// </summary>
    internal static NodeProto? Replacement(OnnxGraph graph, NodeProto node, string weight, string scales)
    {
        if (!Takes(graph, node))
        {
            return null;
        }

        var inputs = new List<string> { node.Input[0], weight, scales };
        if (node.OpType == "Gemm" && node.Input.Count > 2 && node.Input[2].Length > 0)
        {
            inputs.AddRange(["", node.Input[2]]);
        }

        return new NodeProto { OpType = "DynamicQuantizeMatMul", Domain = "com.microsoft", Name = node.Name, Input = { inputs }, Output = { node.Output } };
    }
}
