using Compress.Core.Diagnostics;
using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Passes.Quantization;
using Compress.Core.Torch;
using Compress.Spec;
using static TorchSharp.torch;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Core.Passes.Finetune;

/// <summary>
/// One weight the finetune step trains: a float shadow (an autograd leaf), the mask of its pruned positions, how the
/// shadow becomes the value the graph reads (on its quantization grid, straight-through), and how a trained shadow is
/// written back into the working model in the form the steps left it (float, int8 QDQ codes, MatMulNBits blocks).
/// </summary>
internal sealed class TrainableWeight(string value, string layer, Tensor shadow, Tensor? mask, Func<Tensor, Tensor> forward, Action<Tensor> writeBack) : IDisposable
{
    /// <summary>The name the training graph reads the value under.</summary>
    public string Value { get; } = value;

    /// <summary>The node it belongs to, for notes.</summary>
    public string Layer { get; } = layer;

    /// <summary>The trained values: a parameter (an autograd leaf) the optimiser steps.</summary>
    public TorchSharp.Modules.Parameter Shadow { get; } = new(shadow.detach(), requires_grad: true);

    /// <summary>1 where a weight may train, 0 where the steps pruned it; null for a layer without pruned weights.</summary>
    public Tensor? Mask { get; } = mask;

    /// <summary>The graph's value for the current shadow (differentiable in the shadow).</summary>
    public Tensor Forward() => forward(Mask is null ? Shadow : Shadow * Mask);

    /// <summary>Writes <paramref name="trained"/> (a shadow's values) into the working model.</summary>
    public void WriteBack(Tensor trained) => writeBack(Mask is null ? trained : trained * Mask);

    public void Dispose()
    {
        Shadow.Dispose();
        Mask?.Dispose();
    }
}

/// <summary>
/// The working model as the finetune step trains it (algorithms.md §17): a graph that shares the working copy's nodes and
/// initializers except where a weight trains — a float weight is read as shadow·mask; an int8 weight behind
/// DequantizeLinear becomes a float value fake-quantized on its per-channel grid; a MatMulNBits node becomes a MatMul of a
/// fake-quantized [K, N] weight on its blocks; each activation QuantizeLinear → DequantizeLinear pair becomes one
/// fake-quantize node — all with straight-through gradients, the scales and zero points held fixed. Biases of the trained
/// Conv/Gemm nodes train as float. float16 values stay as they are.
/// </summary>
internal static class TrainingModel
{
    /// <summary>The executor's own op: QuantizeLinear then DequantizeLinear with a straight-through gradient.</summary>
    public const string FakeQuantize = "FakeQuantize";

    public const string Domain = "compress.training";

    public static (OnnxModel Model, List<TrainableWeight> Weights) Build(CompressionContext context, FinetuneStep step)
    {
        var model = context.Model;
        if (model.ExternalData.Count > 0)
        {
            throw CompressException.Error(DiagnosticCodes.FinetuneUnsupported,
                "'finetune' does not train a model whose weights are in external data (over 2 GB): it holds every weight as a float shadow in memory", model.Path);
        }

        var graph = model.Graph;
        var source = model.Proto.Graph;
        var training = new GraphProto { Name = source.Name };
        training.Input.Add(source.Input);
        training.Output.Add(source.Output);
        training.Initializer.Add(source.Initializer);
        var weights = new List<TrainableWeight>();
        var pruned = context.Layers.Values.Where(l => l.Sparsity > 0).SelectMany(l => l.StoredAs).ToHashSet(StringComparer.Ordinal);
        var taken = new HashSet<string>(StringComparer.Ordinal);
        foreach (var node in source.Node)
        {
            if (node.OpType == "MatMulNBits" && node.Domain == "com.microsoft" && Selected(node, step, "MatMul"))
            {
                training.Node.Add(MatMulNBits(context, node, training, weights, pruned.Contains(node.Input[1])));
                continue;
            }

            if (IsDequantize(node) && graph.GetProducer(node.Input[0]) is { } quantize && IsDequantize(quantize, "QuantizeLinear")
                && quantize.Input.Count > 1 && node.Input.Count > 1 && quantize.Input[1] == node.Input[1] && ZeroPoint(quantize) == ZeroPoint(node))
            {
                // An activation's Q → DQ: one fake-quantize reading what the QuantizeLinear read.
                var fake = new NodeProto { OpType = FakeQuantize, Domain = Domain, Name = node.Name, Input = { quantize.Input }, Output = { node.Output } };
                fake.Attribute.Add(node.Attribute);
                training.Node.Add(fake);
                continue;
            }

            training.Node.Add(node);
            if (!DistillSelects(node, step) || node.Input.Count < 2)
            {
                continue;
            }

            // The weight: a float initializer, or int8 codes behind a DequantizeLinear.
            var weightName = node.Input[1];
            if (graph.GetInitializer(weightName) is { DataType: (int)DataType.Float } floatWeight && floatWeight.Dims.Count >= 2 && taken.Add(weightName))
            {
                weights.Add(FloatWeight(context, floatWeight, OnnxGraph.Describe(node), pruned.Contains(weightName)));
            }
            else if (graph.GetProducer(weightName) is { } dq && IsDequantize(dq) && graph.GetInitializer(dq.Input[0]) is { } codes
                && codes.DataType is (int)DataType.Int8 or (int)DataType.Uint8 && graph.GetConsumers(weightName).Count == 1 && taken.Add(weightName))
            {
                training.Node.Remove(dq);
                weights.Add(QdqWeight(context, dq, codes, OnnxGraph.Describe(node), pruned.Contains(codes.Name)));
            }

            // The bias of Conv and Gemm trains as float.
            if (node.OpType is "Conv" or "Gemm" && node.Input.Count > 2 && graph.GetInitializer(node.Input[2]) is { DataType: (int)DataType.Float } bias
                && graph.GetConsumers(bias.Name).Count == 1 && taken.Add(bias.Name))
            {
                weights.Add(FloatWeight(context, bias, OnnxGraph.Describe(node), masked: false));
            }
        }

        // A value that was a node's output (a DequantizeLinear's, a MatMulNBits weight) enters the graph as an initializer the steps set.
        var stored = training.Initializer.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var w in weights.Where(w => !stored.Contains(w.Value)))
        {
            using var value = w.Forward().detach();
            training.Initializer.Add(value.ToOnnx(w.Value));
        }

        // The QuantizeLinear nodes whose DequantizeLinear became fake quantization compute nothing read any more.
        var read = training.Node.SelectMany(n => n.Input).Concat(training.Output.Select(o => o.Name)).ToHashSet(StringComparer.Ordinal);
        foreach (var unread in training.Node.Where(n => n.OpType == "QuantizeLinear" && !n.Output.Any(read.Contains)).ToList())
        {
            training.Node.Remove(unread);
        }

        // The model's other fields (opsets, metadata) copied, not its graph: the weights are shared, not duplicated.
        var proto = new ModelProto { IrVersion = model.Proto.IrVersion, OpsetImport = { model.Proto.OpsetImport }, Graph = training };
        return (new OnnxModel(proto), weights);
    }

    /// <summary>Whether the step trains the weights of <paramref name="node"/> (its op types and include/exclude globs).</summary>
    private static bool DistillSelects(NodeProto node, FinetuneStep step) => string.IsNullOrEmpty(node.Domain) && Selected(node, step, node.OpType);

    private static bool Selected(NodeProto node, FinetuneStep step, string opType) =>
        (step.OpTypes.Contains(opType) || (opType == "MatMul" && step.OpTypes.Contains("Gemm"))) && WeightSelection.Matches(node, step);

    private static bool IsDequantize(NodeProto node, string opType = "DequantizeLinear") =>
        node.OpType == opType && (string.IsNullOrEmpty(node.Domain) || node.Domain == "com.microsoft") && node.Int("block_size", 0) == 0;

    private static string ZeroPoint(NodeProto node) => node.Input.Count > 2 ? node.Input[2] : "";

    private static TrainableWeight FloatWeight(CompressionContext context, TensorProto weight, string layer, bool masked)
    {
        var values = context.Model.ToTorch(weight);
        var mask = masked ? values.ne(0).to_type(ScalarType.Float32) : null;
        return new TrainableWeight(weight.Name, layer, values, mask, w => w.alias(), // a new handle: the graph disposes the values it is given
            trained => context.Model.ReplaceData(weight, trained.ToOnnx(weight.Name)));
    }

    /// <summary>int8/uint8 codes q with scale s and zero point z on an axis: the shadow s·(q − z), trained on that grid.</summary>
    private static TrainableWeight QdqWeight(CompressionContext context, NodeProto dq, TensorProto codes, string layer, bool masked)
    {
        var graph = context.Model.Graph;
        var q = context.Model.ToTorch(codes);
        var scale = context.Model.ToTorch(graph.GetInitializer(dq.Input[1]) ?? throw Unsupported(dq, "a scale that is not an initializer"));
        var zero = dq.Input.Count > 2 && dq.Input[2].Length > 0
            ? context.Model.ToTorch(graph.GetInitializer(dq.Input[2]) ?? throw Unsupported(dq, "a zero point that is not an initializer"))
            : zeros([], q.dtype);
        var grid = new AxisGrid(q, scale, zero, (int)dq.Int("axis", 1));
        var shadow = grid.Dequantize(q);
        var mask = masked ? q.ne(grid.Zero.to_type(q.dtype)).to_type(ScalarType.Float32) : null;
        return new TrainableWeight(dq.Output[0], layer, shadow, mask, grid.FakeQuantize,
            trained => context.Model.ReplaceData(codes, grid.Codes(trained).to_type(q.dtype).ToOnnx(codes.Name)));
    }

    /// <summary>
    /// MatMulNBits (A, B, scales[, zero points]): the shadow W [N, K] dequantized from its blocks, read by a MatMul as
    /// fake-quantized Wᵀ; written back as the same packed codes layout.
    /// </summary>
    private static NodeProto MatMulNBits(CompressionContext context, NodeProto node, GraphProto training, List<TrainableWeight> weights, bool masked)
    {
        var graph = context.Model.Graph;
        long k = node.Int("K", 0), n = node.Int("N", 0), bits = node.Int("bits", 4), block = node.Int("block_size", 0);
        if (node.Input.Count > 4 && node.Input.Skip(4).Any(i => i.Length > 0) || bits is not (4 or 8) || k <= 0 || n <= 0 || block <= 0)
        {
            throw Unsupported(node, $"{bits} bits, g_idx or a bias input");
        }

        var packed = graph.GetInitializer(node.Input[1]) ?? throw Unsupported(node, "weights that are not an initializer");
        var scalesProto = graph.GetInitializer(node.Input[2]) ?? throw Unsupported(node, "scales that are not an initializer");
        if (scalesProto.DataType != (int)DataType.Float)
        {
            throw Unsupported(node, $"{OnnxElementTypes.Name(scalesProto.DataType)} scales (it trains float32 MatMulNBits)");
        }

        if (node.Input.Count > 3 && node.Input[3].Length > 0 && graph.GetInitializer(node.Input[3]) is { } zp && zp.DataType != (int)DataType.Uint8)
        {
            throw Unsupported(node, $"{OnnxElementTypes.Name(zp.DataType)} zero points (it trains packed uint8 ones)");
        }

        var blocks = (k + block - 1) / block;
        var raw = context.Model.ToTorch(packed).to_type(ScalarType.Int32).reshape(n, blocks, -1);
        var codes = (bits == 4 ? stack([raw.bitwise_and(15), raw.bitwise_right_shift(4)], -1).reshape(n, blocks, block) : raw).to_type(ScalarType.Float32);
        var scales = context.Model.ToTorch(scalesProto).to_type(ScalarType.Float32).reshape(n, blocks, 1);
        Tensor zeroPoints;
        if (node.Input.Count > 3 && node.Input[3].Length > 0)
        {
            var z = context.Model.ToTorch(graph.GetInitializer(node.Input[3]) ?? throw Unsupported(node, "zero points that are not an initializer")).to_type(ScalarType.Int32);
            zeroPoints = (bits == 4 ? stack([z.bitwise_and(15), z.bitwise_right_shift(4)], -1).reshape(n, -1) : z.reshape(n, -1)).narrow(1, 0, blocks)
                .to_type(ScalarType.Float32).reshape(n, blocks, 1);
        }
        else
        {
            zeroPoints = full([n, blocks, 1], 1 << (int)(bits - 1), ScalarType.Float32);
        }

        var shadow = IntegerGrid.Unblocks(IntegerGrid.Dequantize(codes, scales, zeroPoints), k); // [N, K]
        var mask = masked ? IntegerGrid.Unblocks(codes.ne(zeroPoints), k).to_type(ScalarType.Float32) : null;
        var value = node.Output[0] + "_training_weight";
        var grid = new IntegerGrid((int)bits, Symmetric: false); // codes 0…2^b − 1 about the stored zero points, symmetric or not
        Tensor OnGrid(Tensor w)
        {
            var rounded = IntegerGrid.Unblocks(IntegerGrid.Dequantize(grid.Codes(IntegerGrid.Blocks(w, block), scales, zeroPoints), scales, zeroPoints), k);
            return (w + (rounded - w).detach()).t();
        }

        void WriteBack(Tensor trained)
        {
            var newCodes = grid.Codes(IntegerGrid.Blocks(trained, block), scales, zeroPoints).to_type(ScalarType.Byte);
            var bytes = bits == 4 ? IntegerGrid.PackNibbles(newCodes) : newCodes;
            context.Model.ReplaceData(packed, bytes.contiguous().reshape(packed.Dims.ToArray()).ToOnnx(packed.Name));
        }

        weights.Add(new TrainableWeight(value, OnnxGraph.Describe(node), shadow, mask, OnGrid, WriteBack));
        return new NodeProto { OpType = "MatMul", Name = node.Name, Input = { node.Input[0], value }, Output = { node.Output } };
    }

    private static CompressException Unsupported(NodeProto node, string what) =>
        CompressException.Error(DiagnosticCodes.FinetuneUnsupported, $"'finetune' cannot train '{OnnxGraph.Describe(node)}' ({node.OpType}): {what}");

    /// <summary>A per-tensor or per-axis integer grid of a DequantizeLinear: codes, scale, zero point and the code range.</summary>
    private sealed class AxisGrid
    {
        private readonly Tensor _scale;
        private readonly int _lo;
        private readonly int _hi;

        public AxisGrid(Tensor codes, Tensor scale, Tensor zero, int axis)
        {
            (_lo, _hi) = codes.dtype == ScalarType.Byte ? (0, 255) : (-128, 127);
            var shape = Enumerable.Repeat(1L, (int)codes.dim()).ToArray();
            if (scale.numel() > 1)
            {
                shape[axis < 0 ? axis + (int)codes.dim() : axis] = scale.numel();
            }

            _scale = scale.to_type(ScalarType.Float32).reshape(scale.numel() > 1 ? shape : []);
            Zero = zero.to_type(ScalarType.Float32).reshape(zero.numel() > 1 ? shape : []);
        }

        public Tensor Zero { get; }

        public Tensor Dequantize(Tensor codes) => (codes.to_type(ScalarType.Float32) - Zero) * _scale;

        public Tensor Codes(Tensor w) => (w / _scale).round().add(Zero).clamp(_lo, _hi);

        public Tensor FakeQuantize(Tensor w) => w + ((Codes(w) - Zero) * _scale - w).detach();
    }
}
