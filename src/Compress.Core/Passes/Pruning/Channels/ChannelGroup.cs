using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;

namespace Compress.Core.Passes.Pruning.Channels;

/// <summary>What a slice of an initializer is to its group: the producer's outputs, a consumer's inputs, or a coupled parameter.</summary>
public enum SliceRole
{
    /// <summary>Output channels of a Conv/ConvTranspose/Gemm/MatMul writing the group's channels (rows of W, a ConvTranspose's axis 1, entries of B).</summary>
    Producer,

    /// <summary>Input channels of a Conv/ConvTranspose/Gemm/MatMul reading them (columns of W, a ConvTranspose's axis 0): scored, refitted, removed.</summary>
    Consumer,

    /// <summary>A per-channel parameter that goes with the channel: BatchNorm's four, a depthwise Conv's W and B, a broadcast constant.</summary>
    Parameter,
}

/// <summary>
/// One initializer's share of a group: channel c of the group is the elements [Offset + c·Stride, Offset + (c+1)·Stride)
/// of <see cref="Axis"/> (Stride 1 for a plain channel axis; H·W where a Flatten feeds a Gemm; Offset where a Concat
/// put the group's channels after others).
/// </summary>
public sealed record ChannelSlice(string Initializer, NodeProto Node, int Axis, long Offset, long Stride, SliceRole Role);

/// <summary>
/// A change besides slicing that removing channels needs: the feature count of a Reshape's shape constant, lowered by
/// the removed channels times <see cref="PerChannel"/>.
/// </summary>
public sealed record ChannelFix(NodeProto Node, string ShapeInitializer, int ShapeIndex, long PerChannel);

/// <summary>
/// An integer attribute that counts the group's channels: a depthwise Conv's <c>group</c>, com.microsoft.Attention's
/// <c>num_heads</c> and <c>qkv_hidden_sizes</c>, a Split's <c>split</c> sizes (before opset 13). Entry i (the one value
/// of an int attribute) is lowered by the removed channels times <c>PerChannel[i]</c>.
/// </summary>
public sealed record AttributeFix(NodeProto Node, string Name, long[] PerChannel);

/// <summary>
/// A count in a constant shape that removing attention heads lowers: entry <see cref="Element"/> of the constant
/// <see cref="Values"/> read as input <see cref="Input"/> of <see cref="Node"/>, lowered by the removed heads times
/// <see cref="PerHead"/>. The node gets a constant of its own: exports share shape constants between layers.
/// </summary>
public sealed record ShapeFix(NodeProto Node, int Input, long[] Values, int Element, long PerHead)
{
    /// <summary>Whether the constant is a scalar (a head count multiplied into a size), written back as one.</summary>
    public bool Scalar { get; init; }
}

/// <summary>
/// A dependency group (algorithms.md §14): channels written by one or more producers and read, through pass-through
/// ops, by every consumer — removing channel c removes it from all of them at once, so the graph stays consistent.
/// A group the engine cannot remove safely has a <see cref="Refusal"/> and is left whole.
/// </summary>
public sealed class ChannelGroup
{
    public ChannelGroup(NodeProto seed, long channels)
    {
        Seed = seed;
        Channels = channels;
    }

    /// <summary>The first producer in graph order: the group's name in notes and the plan's layer.</summary>
    public NodeProto Seed { get; }

    /// <summary>Channels in the group.</summary>
    public long Channels { get; }

    public List<NodeProto> Producers { get; } = [];

    public List<ChannelSlice> Slices { get; } = [];

    public List<ChannelFix> Fixes { get; } = [];

    public List<AttributeFix> AttributeFixes { get; } = [];

    /// <summary>Shape constants rewritten for an attention-head group.</summary>
    public List<ShapeFix> ShapeFixes { get; } = [];

    /// <summary>Whether the channels are attention heads (<see cref="AttentionHeads"/>): kept counts are not rounded to blocks.</summary>
    public bool Heads { get; init; }

    /// <summary>Values whose shape changes (value_info for them is dropped after removal).</summary>
    public HashSet<string> Values { get; } = new(StringComparer.Ordinal);

    /// <summary>Why the group is left whole, or null when it can be pruned.</summary>
    public string? Refusal { get; set; }

    /// <summary>The producers' node names, sorted: the group's identity across re-analyses of the graph.</summary>
    public string Key => string.Join("|", Producers.Select(Onnx.OnnxGraph.Describe).Order(StringComparer.Ordinal));

    public IEnumerable<ChannelSlice> Consumers => Slices.Where(s => s.Role == SliceRole.Consumer);

    /// <summary>
    /// Why the slices cannot be cut, or null: every sliced initializer must belong to its node alone (a shared weight
    /// would be cut for its other readers too), and none may be coupled to the group twice along one axis.
    /// </summary>
    internal string? SliceConflict(OnnxGraph graph)
    {
        foreach (var slice in Slices)
        {
            var readers = graph.GetConsumers(slice.Initializer);
            if (readers.Count != 1 || readers[0].Input.Count(i => i == slice.Initializer) != 1)
            {
                return $"the initializer '{slice.Initializer}' is shared by several inputs";
            }
        }

        // A fused q/k/v projection couples its weight (and bias) three times along one axis, at disjoint offsets: allowed
        // for a head group's producers. A consumer reading the group twice (a Concat of it with itself) stays refused:
        // each slice would refit the whole weight from its own copy, the second undoing the first.
        return Slices.GroupBy(s => (s.Initializer, s.Axis)).Any(g => g.Count() > 1 && !(Heads && g.All(s => s.Role != SliceRole.Consumer) && Disjoint(g.ToList())))
            ? "an initializer is coupled to the group twice"
            : null;
    }

    private bool Disjoint(List<ChannelSlice> slices)
    {
        var spans = slices.Select(s => (Start: s.Offset, End: s.Offset + Channels * s.Stride)).OrderBy(s => s.Start).ToList();
        return spans.Zip(spans.Skip(1)).All(p => p.First.End <= p.Second.Start);
    }

    public override string ToString() => $"{Onnx.OnnxGraph.Describe(Seed)} ({Channels} {(Heads ? "heads" : "channels")}, {Producers.Count} producers, {Consumers.Count()} consumers)";
}
