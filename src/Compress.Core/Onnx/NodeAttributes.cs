using Compress.Core.Onnx.Proto;

namespace Compress.Core.Onnx;

/// <summary>Typed reads of a node's attributes, with the operator's default when absent.</summary>
public static class NodeAttributes
{
    public static long Int(this NodeProto node, string name, long fallback) => Find(node, name)?.I ?? fallback;

    public static float Float(this NodeProto node, string name, float fallback) => Find(node, name) is { } a ? a.F : fallback;

    public static string String(this NodeProto node, string name, string fallback) => Find(node, name) is { } a ? a.S.ToStringUtf8() : fallback;

    /// <summary>The ints of a list attribute, or null when absent.</summary>
    public static long[]? Ints(this NodeProto node, string name) => Find(node, name) is { } a ? a.Ints.ToArray() : null;

    public static float[]? Floats(this NodeProto node, string name) => Find(node, name) is { } a ? a.Floats.ToArray() : null;

    public static TensorProto? TensorValue(this NodeProto node, string name) => Find(node, name)?.T;

    private static AttributeProto? Find(NodeProto node, string name) => node.Attribute.FirstOrDefault(a => a.Name == name);
}
