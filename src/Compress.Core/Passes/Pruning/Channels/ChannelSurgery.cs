using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Torch;
using static TorchSharp.torch;

namespace Compress.Core.Passes.Pruning.Channels;

/// <summary>
/// Physical removal of a group's channels (algorithms.md §14): every slice of the group loses the removed channels'
/// elements — Conv W rows and the next Conv's W columns, biases, BatchNorm's scale/B/mean/var, Gemm rows or columns
/// by transB, broadcast constants, depthwise filters — the attributes that count them (a depthwise Conv's <c>group</c>,
/// com.microsoft.Attention's <c>num_heads</c>, a Split's <c>split</c>) and a Reshape's feature count are lowered to match, an attention group's head counts, merged width and split sizes are rewritten (<see cref="ShapeFix"/>), and
/// value_info for the reshaped values is dropped (ONNX Runtime infers it again).
/// </summary>
public static class ChannelSurgery
{
    /// <param name="keep">The group's channels to keep, ascending, at least one.</param>
    public static void Remove(OnnxModel model, ChannelGroup group, IReadOnlyList<long> keep)
    {
        if (group.Refusal is not null || keep.Count == 0 || keep.Count > group.Channels)
        {
            throw new ArgumentException($"cannot keep {keep.Count} of the {group.Channels} channels of {group}", nameof(keep));
        }

        var removed = RemovedChannels(group.Channels, keep);
        if (removed.Length == 0)
        {
            return;
        }

        var graph = model.Graph;
        // Slices of one initializer along one axis (a fused q/k/v weight: three) are cut together, from the original indices.
        foreach (var slices in group.Slices.GroupBy(s => (s.Initializer, s.Axis)))
        {
            using var scope = NewDisposeScope();
            var initializer = graph.GetInitializer(slices.Key.Initializer)!;
            var values = model.ToTorch(initializer);
            var length = values.shape[slices.Key.Axis];
            var kept = slices.Select(s => KeptIndices(length, s, removed).ToHashSet()).Aggregate((a, b) => { a.IntersectWith(b); return a; }).Order().ToArray();
            var cut = values.index_select(slices.Key.Axis, tensor(kept));
            model.ReplaceData(initializer, cut.ToOnnx(initializer.Name));
            initializer.Dims.Clear();
            initializer.Dims.Add(cut.shape);
        }

        foreach (var fix in group.AttributeFixes)
        {
            var attribute = fix.Node.Attribute.First(a => a.Name == fix.Name);
            if (attribute.Ints.Count == 0 && fix.PerChannel.Length == 1)
            {
                attribute.I -= removed.Length * fix.PerChannel[0];
                continue;
            }

            for (var i = 0; i < attribute.Ints.Count; i++)
            {
                attribute.Ints[i] -= removed.Length * fix.PerChannel[i];
            }
        }

        foreach (var fix in group.Fixes)
        {
            var shape = graph.GetInitializer(fix.ShapeInitializer)!;
            long[] dims;
            using (var data = model.OpenTensorData(shape))
            {
                dims = data.As<long>().ToArray();
            }

            if (dims[fix.ShapeIndex] > 0)
            {
                dims[fix.ShapeIndex] -= removed.Length * fix.PerChannel;
                model.ReplaceData(shape, OnnxTensors.Create(shape.Name, dims, dims.Length));
            }
        }

        // The entries of one constant (a Split's three sizes) are rewritten together.
        var rewritten = new List<ShapeFix>();
        foreach (var fix in group.ShapeFixes.Where(f => !rewritten.Any(d => ReferenceEquals(d.Node, f.Node) && d.Input == f.Input)))
        {
            var together = group.ShapeFixes.Where(f => ReferenceEquals(f.Node, fix.Node) && f.Input == fix.Input).ToList();
            rewritten.AddRange(together);
            Rewrite(model, together, removed.Length);
        }

        foreach (var info in graph.Proto.ValueInfo.Where(v => group.Values.Contains(v.Name)).ToList())
        {
            graph.Proto.ValueInfo.Remove(info);
        }

        graph.Refresh();
    }

    /// <summary>
    /// An attention group's shape entry lowered by <paramref name="removed"/> heads in a new constant the node alone reads;
    /// the old input goes when nothing else reads it (an Unsqueeze of a scalar, and the scalar, with it).
    /// </summary>
    private static void Rewrite(OnnxModel model, List<ShapeFix> fixes, int removed)
    {
        var graph = model.Graph;
        var fix = fixes[0];
        var old = fix.Node.Input[fix.Input];
        var values = fix.Values.ToArray();
        foreach (var entry in fixes)
        {
            values[entry.Element] -= removed * entry.PerHead;
        }

        var name = graph.UniqueName($"{old}_heads");
        graph.AddInitializer(fix.Scalar ? OnnxTensors.Create(name, values) : OnnxTensors.Create(name, values, values.Length));
        fix.Node.Input[fix.Input] = name;
        graph.Refresh();
        if (graph.GetProducer(old) is { } producer && graph.GetConsumers(old).Count == 0 && !graph.IsGraphOutput(old))
        {
            graph.Remove(producer);
            foreach (var input in producer.Input.Where(i => i.Length > 0))
            {
                graph.RemoveInitializerIfUnused(input);
            }
        }

        graph.RemoveInitializerIfUnused(old);
    }

    /// <summary>The group's channels not in <paramref name="keep"/>, ascending.</summary>
    public static long[] RemovedChannels(long channels, IReadOnlyList<long> keep)
    {
        var kept = new HashSet<long>(keep);
        return Enumerable.Range(0, (int)channels).Select(c => (long)c).Where(c => !kept.Contains(c)).ToArray();
    }

    /// <summary>The indices along the slice's axis that stay: all but [Offset + c·Stride, Offset + (c+1)·Stride) for removed c.</summary>
    public static long[] KeptIndices(long length, ChannelSlice slice, long[] removed)
    {
        var gone = new bool[length];
        foreach (var c in removed)
        {
            for (var j = 0L; j < slice.Stride; j++)
            {
                gone[slice.Offset + c * slice.Stride + j] = true;
            }
        }

        return Enumerable.Range(0, (int)length).Where(i => !gone[i]).Select(i => (long)i).ToArray();
    }
}
