using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Torch;
using static TorchSharp.torch;

namespace Compress.Core.Passes.Quantization;

/// <summary>
/// Builds QuantizeLinear/DequantizeLinear nodes and their scale and zero-point initializers. Models below
/// ai.onnx opset 13 (no per-axis DequantizeLinear) get ONNX Runtime's com.microsoft Q/DQ, which its QDQ
/// fusions recognise too, so the rest of the model keeps its opset.
/// </summary>
internal sealed class QdqNodes
{
    private readonly OnnxModel _model;

    public QdqNodes(OnnxModel model)
    {
        _model = model;
        Domain = (model.GetOpsetVersion("") ?? 0) < 13 ? "com.microsoft" : "";
        if (Domain.Length > 0)
        {
            model.RequireOpset(Domain, 1);
        }
    }

    public string Domain { get; }

    /// <summary>
    /// A Q→DQ pair on activation <paramref name="tensor"/>, placed after its producer; readers move to the DQ output
    /// (returned) — only the quantized ones when <paramref name="readers"/> says which, so float ops keep the float values.
    /// </summary>
    public string InsertPair(string tensor, float scale, int zeroPoint, bool unsigned, Func<NodeProto, bool>? readers = null)
    {
        var graph = _model.Graph;
        var scaleName = graph.AddInitializer(OnnxTensors.Scalar(graph.UniqueName(tensor + "_scale"), scale)).Name;
        var zeroName = graph.AddInitializer(unsigned
            ? OnnxTensors.Scalar(graph.UniqueName(tensor + "_zero_point"), (byte)zeroPoint)
            : OnnxTensors.Scalar(graph.UniqueName(tensor + "_zero_point"), (sbyte)zeroPoint)).Name;
        var quantized = graph.UniqueName(tensor + "_quantized");
        var dequantized = graph.UniqueName(tensor + "_dequantized");
        var q = Node("QuantizeLinear", [tensor, scaleName, zeroName], quantized, null);
        var dq = Node("DequantizeLinear", [quantized, scaleName, zeroName], dequantized, null);
        if (graph.GetProducer(tensor) is { } producer)
        {
            graph.InsertAfter(producer, q, dq);
        }
        else
        {
            graph.Prepend(q, dq);
        }

        graph.RedirectConsumers(tensor, dequantized, except: q, graphOutputs: false, only: readers);
        return dequantized;
    }

    /// <summary>A DequantizeLinear of constant integer data (weights or biases); returns its output and the integer initializer.</summary>
    public (string Output, TensorProto Quantized) Dequantize(string baseName, Tensor quantized, Tensor scales, Tensor zeroPoints, int? axis)
    {
        var graph = _model.Graph;
        var perTensor = axis is null;
        var quantizedTensor = graph.AddInitializer(quantized.ToOnnx(graph.UniqueName(baseName + "_quantized")));
        var q = quantizedTensor.Name;
        var s = graph.AddInitializer((perTensor ? scales.reshape([]) : scales).ToOnnx(graph.UniqueName(baseName + "_scale"))).Name;
        var z = graph.AddInitializer((perTensor ? zeroPoints.reshape([]) : zeroPoints).ToOnnx(graph.UniqueName(baseName + "_zero_point"))).Name;
        var output = graph.UniqueName(baseName + "_dequantized");
        graph.Prepend(Node("DequantizeLinear", [q, s, z], output, axis));
        return (output, quantizedTensor);
    }

    private NodeProto Node(string op, string[] inputs, string output, int? axis)
    {
        var node = new NodeProto { OpType = op, Name = _model.Graph.UniqueName(output + "_node"), Input = { inputs }, Output = { output } };
        if (Domain.Length > 0)
        {
            node.Domain = Domain;
        }

        if (axis is { } a)
        {
            node.Attribute.Add(OnnxAttribute.Int("axis", a));
        }

        return node;
    }
}
