using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Torch;
using Compress.Spec;
using static TorchSharp.torch;

namespace Compress.Core.Passes.Factorization;

/// <summary>
/// How each op type takes a rank-r factorization W ≈ B·A (A [r, in], B [out, r], <see cref="LowRankFactorizer"/>):
/// which layers can, and the two nodes that replace one. A table of small handlers, one per op type.
/// </summary>
internal static class LowRankForms
{
    private delegate (NodeProto First, NodeProto Second) SplitNode(OnnxGraph graph, WeightUse use, Tensor a, Tensor b, string aName, string bName, string hidden);

    private static readonly Dictionary<string, (Func<WeightUse, string?> Refusal, SplitNode Split)> Handlers = new(StringComparer.Ordinal)
    {
        ["Gemm"] = (MatrixRefusal, SplitGemm),
        ["MatMul"] = (MatrixRefusal, SplitMatMul),
        ["Conv"] = (ConvRefusal, SplitConv),
    };

    /// <summary>The layers <paramref name="step"/> selects that can be factorized; the others' reasons go to <paramref name="left"/> (as "node (why)").</summary>
    public static IEnumerable<WeightUse> Splittable(OnnxGraph graph, SpecStep step, List<string> left)
    {
        foreach (var use in WeightSelection.Select(graph, step))
        {
            if (Refusal(graph, use) is not { } refusal)
            {
                yield return use;
            }
            else if (refusal.Length > 0)
            {
                left.Add($"{use.NodeName} ({refusal})");
            }
        }
    }

    /// <summary>
    /// Null when the layer can be factorized; else why not: empty for what the step passes over silently (a Gemm with
    /// transA or a scale, a batched MatMul weight), a reason for the notes otherwise.
    /// </summary>
    public static string? Refusal(OnnxGraph graph, WeightUse use)
    {
        if (!Handlers.TryGetValue(use.Node.OpType, out var handler))
        {
            return "";
        }

        if (handler.Refusal(use) is { } refusal)
        {
            return refusal;
        }

        var readers = graph.GetConsumers(use.Weight.Name).Count;
        return readers == 1 ? null : $"its weight is read by {readers} nodes";
    }

    /// <summary>The two nodes replacing <paramref name="use"/>'s node; their factors are added to the graph.</summary>
    public static (NodeProto First, NodeProto Second) Split(OnnxGraph graph, WeightUse use, Tensor a, Tensor b, string aName, string bName, string hidden) =>
        Handlers[use.Node.OpType].Split(graph, use, a, b, aName, bName, hidden);

    private static string? MatrixRefusal(WeightUse use) => use.Weight.Dims.Count == 2 && WeightSelection.IsPlainMatMul(use.Node) ? null : "";

    /// <summary>Group-1 Conv with one or two spatial axes: a grouped or depthwise Conv's weight is not one matrix over its inputs.</summary>
    private static string? ConvRefusal(WeightUse use)
    {
        var group = use.Node.Int("group", 1);
        if (group != 1)
        {
            return use.Weight.Dims[1] == 1 ? $"depthwise Conv (group {group}): left whole" : $"grouped Conv (group {group}): left whole";
        }

        var spatial = use.Weight.Dims.Count - 2;
        return spatial is 1 or 2 ? null : $"{spatial}-D Conv: only 1-D and 2-D Convs are factorized";
    }

    /// <summary>
    /// Null where a Conv can also take the spatial form (<see cref="SpatialSvd"/>): 2-D with kh, kw &gt; 1, explicit pads,
    /// and a horizontal axis that keeps its size (stride 1, left + right pads = (kw − 1)·dilation), so the kh×1 Conv
    /// runs at the output positions and its multiply-adds per output position are exact.
    /// </summary>
    public static string? SpatialRefusal(WeightUse use)
    {
        var node = use.Node;
        var dims = use.Weight.Dims;
        if (node.OpType != "Conv" || dims.Count != 4 || dims[2] < 2 || dims[3] < 2)
        {
            return "not a 2-D Conv with a kh×kw kernel";
        }

        if (node.String("auto_pad", "NOTSET") != "NOTSET")
        {
            return "auto_pad";
        }

        var (strides, pads, dilations) = Window(node);
        return strides[1] == 1 && pads[1] + pads[3] == dilations[1] * (dims[3] - 1) ? null : "the horizontal axis changes size";
    }

    /// <summary>
    /// Spatial form: a kh×1 Conv(C_in→r) with the vertical strides, pads and dilations (V [r, C_in, kh, 1]), then a 1×kw
    /// Conv(r→C_out) with the horizontal pads and dilations and the bias (H [C_out, r, 1, kw]).
    /// </summary>
    public static (NodeProto First, NodeProto Second) SplitSpatial(OnnxGraph graph, WeightUse use, Tensor v, Tensor h, string vName, string hName, string hidden)
    {
        var node = use.Node;
        var (kh, kw) = (use.Weight.Dims[2], use.Weight.Dims[3]);
        var (strides, pads, dilations) = Window(node);
        graph.AddInitializer(v.contiguous().ToOnnx(vName));
        graph.AddInitializer(h.contiguous().ToOnnx(hName));
        var first = new NodeProto { OpType = "Conv", Name = graph.UniqueName(OnnxGraph.Describe(node) + "_a") };
        first.Input.Add([node.Input[0], vName]);
        first.Output.Add(hidden);
        first.Attribute.Add([
            OnnxAttribute.Ints("kernel_shape", kh, 1), OnnxAttribute.Ints("strides", strides[0], 1),
            OnnxAttribute.Ints("pads", pads[0], 0, pads[2], 0), OnnxAttribute.Ints("dilations", dilations[0], 1)]);
        var second = new NodeProto { OpType = "Conv", Name = OnnxGraph.Describe(node) };
        second.Input.Add(hidden);
        second.Input.Add(hName);
        second.Input.Add(node.Input.Skip(2));
        second.Output.Add(node.Output);
        second.Attribute.Add([
            OnnxAttribute.Ints("kernel_shape", 1, kw), OnnxAttribute.Ints("pads", 0, pads[1], 0, pads[3]), OnnxAttribute.Ints("dilations", 1, dilations[1])]);
        return (first, second);
    }

    /// <summary>A 2-D Conv's strides, pads [top, left, bottom, right] and dilations, defaults filled in.</summary>
    private static (long[] Strides, long[] Pads, long[] Dilations) Window(NodeProto node)
    {
        static long[] Or(long[]? values, long[] fallback) => values?.Length == fallback.Length ? values : fallback;
        return (Or(node.Ints("strides"), [1, 1]), Or(node.Ints("pads"), [0, 0, 0, 0]), Or(node.Ints("dilations"), [1, 1]));
    }

    private static (NodeProto, NodeProto) SplitGemm(OnnxGraph graph, WeightUse use, Tensor a, Tensor b, string aName, string bName, string hidden)
    {
        var node = use.Node;
        graph.AddInitializer(a.contiguous().ToOnnx(aName)); // [r, in], transB
        graph.AddInitializer(b.contiguous().ToOnnx(bName)); // [out, r], transB
        var first = new NodeProto { OpType = "Gemm", Name = graph.UniqueName(OnnxGraph.Describe(node) + "_a") };
        first.Input.Add([node.Input[0], aName]);
        first.Output.Add(hidden);
        first.Attribute.Add(OnnxAttribute.Int("transB", 1));
        var second = new NodeProto { OpType = "Gemm", Name = OnnxGraph.Describe(node) };
        second.Input.Add(hidden);
        second.Input.Add(bName);
        second.Input.Add(node.Input.Skip(2));
        second.Output.Add(node.Output);
        second.Attribute.Add(OnnxAttribute.Int("transB", 1));
        return (first, second);
    }

    private static (NodeProto, NodeProto) SplitMatMul(OnnxGraph graph, WeightUse use, Tensor a, Tensor b, string aName, string bName, string hidden)
    {
        var node = use.Node;
        graph.AddInitializer(a.t().contiguous().ToOnnx(aName)); // [in, r]
        graph.AddInitializer(b.t().contiguous().ToOnnx(bName)); // [r, out]
        var first = new NodeProto { OpType = "MatMul", Name = graph.UniqueName(OnnxGraph.Describe(node) + "_a") };
        first.Input.Add([node.Input[0], aName]);
        first.Output.Add(hidden);
        var second = new NodeProto { OpType = "MatMul", Name = OnnxGraph.Describe(node) };
        second.Input.Add([hidden, bName]);
        second.Output.Add(node.Output);
        return (first, second);
    }

    /// <summary>
    /// Channel decomposition: Conv(C_in→r) with the original kernel, strides, pads, dilations and auto_pad (A as
    /// [r, C_in, kh, kw]), then a 1×1 Conv(r→C_out) with the bias (B as [C_out, r, 1, 1]) at the same output positions.
    /// </summary>
    private static (NodeProto, NodeProto) SplitConv(OnnxGraph graph, WeightUse use, Tensor a, Tensor b, string aName, string bName, string hidden)
    {
        var node = use.Node;
        var dims = use.Weight.Dims;
        var spatial = dims.Count - 2;
        long[] kernel = [a.shape[0], dims[1], .. dims.Skip(2)];
        long[] pointwise = [b.shape[0], b.shape[1], .. Enumerable.Repeat(1L, spatial)];
        graph.AddInitializer(a.reshape(kernel).contiguous().ToOnnx(aName));
        graph.AddInitializer(b.reshape(pointwise).contiguous().ToOnnx(bName));
        var first = new NodeProto { OpType = "Conv", Name = graph.UniqueName(OnnxGraph.Describe(node) + "_a") };
        first.Input.Add([node.Input[0], aName]);
        first.Output.Add(hidden);
        first.Attribute.Add(node.Attribute.Select(attribute => attribute.Clone()));
        var second = new NodeProto { OpType = "Conv", Name = OnnxGraph.Describe(node) };
        second.Input.Add(hidden);
        second.Input.Add(bName);
        second.Input.Add(node.Input.Skip(2));
        second.Output.Add(node.Output);
        second.Attribute.Add(OnnxAttribute.Ints("kernel_shape", Enumerable.Repeat(1L, spatial).ToArray()));
        return (first, second);
    }
}
