using Compress.Core.Onnx.Proto;
using static TorchSharp.torch;

namespace Compress.Core.Execution;

/// <summary>One node being executed: its proto, its input values (null for an omitted optional input), the opset.</summary>
public sealed record OpCall(NodeProto Node, Tensor?[] Inputs, long Opset)
{
    public Tensor X => Inputs[0]!;

    public Tensor? Input(int index) => index < Inputs.Length ? Inputs[index] : null;

    /// <summary>The values of a small int64 input (shapes, axes, starts…), or null when omitted.</summary>
    public long[]? Longs(int index) => Input(index) is { } t ? t.to_type(ScalarType.Int64).data<long>().ToArray() : null;

    public NotSupportedException Unsupported(string what) =>
        new($"{Node.OpType} node '{(string.IsNullOrEmpty(Node.Name) ? Node.Output[0] : Node.Name)}': {what} is not supported by the TorchSharp executor");
}
