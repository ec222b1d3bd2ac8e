using System.Security.Cryptography;
using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Google.Protobuf;

namespace Compress.Core.Passes.Graph;

/// <summary>
/// The tidy every ONNX output gets before it is checked and written: constants holding the same values are stored once.
/// Exporters write a shape constant per use (a BERT export holds 115 int64 constants of 12 distinct values) and the
/// quantizers write a zero point per tensor; each copy costs its proto and its name. Two initializers of the same
/// element type, shape and bytes become one — the one with the shortest name, ties to the first — and every node of
/// the main graph that read a dropped one reads it; two <c>Constant</c> nodes with the same attributes become the first
/// (which precedes every reader of the later ones in a sorted graph). Same values, so ONNX Runtime computes exactly what
/// it did. Left alone: initializers also listed as graph inputs (a caller may feed them), graph outputs, names read
/// inside If/Loop/Scan subgraphs (their scopes may shadow a name), string tensors, and constants inside subgraphs.
/// Nothing changes when nothing repeats; the order of what stays is kept, so the same model gives the same bytes.
/// </summary>
public static class DuplicateConstants
{
    /// <summary>Merges repeated constants of the main graph; returns how many initializers and Constant nodes it dropped.</summary>
    public static int Merge(OnnxModel model)
    {
        var graph = model.Graph;
        var pinned = new HashSet<string>(graph.Proto.Output.Select(o => o.Name), StringComparer.Ordinal);
        pinned.UnionWith(graph.Proto.Input.Select(i => i.Name));
        foreach (var node in graph.Proto.Node)
        {
            foreach (var attribute in node.Attribute)
            {
                foreach (var subgraph in attribute.Graphs.Append(attribute.G).OfType<GraphProto>())
                {
                    AddNames(subgraph, pinned);
                }
            }
        }

        var renamed = new Dictionary<string, string>(StringComparer.Ordinal);
        MergeInitializers(model, pinned, renamed);
        var droppedNodes = MergeConstantNodes(graph, pinned, renamed);
        if (renamed.Count == 0)
        {
            return 0;
        }

        foreach (var node in graph.Proto.Node)
        {
            for (var i = 0; i < node.Input.Count; i++)
            {
                if (renamed.TryGetValue(node.Input[i], out var kept))
                {
                    node.Input[i] = kept;
                }
            }
        }

        foreach (var node in droppedNodes)
        {
            graph.Proto.Node.Remove(node);
        }

        foreach (var info in graph.Proto.ValueInfo.Where(v => renamed.ContainsKey(v.Name)).ToList())
        {
            graph.Proto.ValueInfo.Remove(info);
        }

        graph.Refresh();
        return renamed.Count;
    }

    /// <summary>Initializers grouped by element type, shape and a hash of their bytes; each group's copies dropped.</summary>
    private static void MergeInitializers(OnnxModel model, HashSet<string> pinned, Dictionary<string, string> renamed)
    {
        var graph = model.Graph;
        var candidates = graph.Proto.Initializer
            .Where(t => t.DataType != (int)TensorProto.Types.DataType.String && t.DataType != (int)TensorProto.Types.DataType.Undefined && !pinned.Contains(t.Name))
            .GroupBy(t => t.Name, StringComparer.Ordinal).Where(g => g.Count() == 1).Select(g => g.First()) // a name given twice: leave both
            .GroupBy(t => (t.DataType, Shape: string.Join(",", t.Dims)))
            .Where(g => g.Count() > 1);
        var dropped = new List<TensorProto>();
        foreach (var sameShape in candidates)
        {
            var byHash = new Dictionary<string, List<TensorProto>>(StringComparer.Ordinal);
            foreach (var tensor in sameShape)
            {
                using var data = model.OpenTensorData(tensor);
                var hash = Convert.ToHexString(Hash(data));
                if (!byHash.TryGetValue(hash, out var list))
                {
                    byHash[hash] = list = [];
                }

                list.Add(tensor);
            }

            foreach (var group in byHash.Values.Where(g => g.Count > 1))
            {
                var kept = group.OrderBy(t => t.Name.Length).First(); // a stable sort: ties stay in stored order
                using var keptData = model.OpenTensorData(kept);
                foreach (var copy in group.Where(t => !ReferenceEquals(t, kept)))
                {
                    using var copyData = model.OpenTensorData(copy);
                    if (SameBytes(keptData, copyData))
                    {
                        renamed[copy.Name] = kept.Name;
                        dropped.Add(copy);
                    }
                }
            }
        }

        foreach (var tensor in dropped)
        {
            graph.RemoveInitializer(tensor.Name);
        }
    }

    /// <summary>Constant nodes of the main graph with the same attributes: the later ones' outputs read from the first.</summary>
    private static List<NodeProto> MergeConstantNodes(OnnxGraph graph, HashSet<string> pinned, Dictionary<string, string> renamed)
    {
        var first = new Dictionary<string, string>(StringComparer.Ordinal);
        var dropped = new List<NodeProto>();
        foreach (var node in graph.Proto.Node)
        {
            if (node.OpType != "Constant" || OnnxModel.NormalizeDomain(node.Domain) != "" || node.Output.Count != 1 || node.Output[0].Length == 0
                || pinned.Contains(node.Output[0]) || node.Attribute.Count == 0 || node.Attribute.Any(a => a.RefAttrName.Length > 0))
            {
                continue;
            }

            var key = Convert.ToHexString(SHA256.HashData(ValueBytes(node)));
            if (first.TryGetValue(key, out var kept))
            {
                renamed[node.Output[0]] = kept;
                dropped.Add(node);
            }
            else
            {
                first[key] = node.Output[0];
            }
        }

        return dropped;
    }

    /// <summary>A Constant node's attributes as bytes, its tensor's own name left out (it does not change the value).</summary>
    private static byte[] ValueBytes(NodeProto node)
    {
        using var stream = new MemoryStream();
        foreach (var attribute in node.Attribute.OrderBy(a => a.Name, StringComparer.Ordinal))
        {
            var copy = attribute.Clone();
            copy.T?.ClearName();
            copy.ClearDocString();
            copy.WriteDelimitedTo(stream);
        }

        return stream.ToArray();
    }

    private static byte[] Hash(TensorData data)
    {
        if (data.Length <= int.MaxValue)
        {
            return SHA256.HashData(data.Span);
        }

        using var sha = SHA256.Create();
        using var stream = new CryptoStream(Stream.Null, sha, CryptoStreamMode.Write);
        data.CopyTo(stream);
        stream.FlushFinalBlock();
        return sha.Hash!;
    }

    private static bool SameBytes(TensorData a, TensorData b)
    {
        if (a.Length != b.Length)
        {
            return false;
        }

        // Compared only when their hashes matched: past 2 GiB, where a span cannot hold the data, those hashes decide.
        return a.Length > int.MaxValue || a.Span.SequenceEqual(b.Span);
    }

    /// <summary>Every name a subgraph mentions (recursively): a name it reads from outer scope is among them.</summary>
    private static void AddNames(GraphProto graph, HashSet<string> names)
    {
        names.UnionWith(graph.Input.Select(i => i.Name));
        names.UnionWith(graph.Output.Select(o => o.Name));
        names.UnionWith(graph.Initializer.Select(i => i.Name));
        foreach (var node in graph.Node)
        {
            names.UnionWith(node.Input);
            names.UnionWith(node.Output);
            foreach (var attribute in node.Attribute)
            {
                foreach (var subgraph in attribute.Graphs.Append(attribute.G).OfType<GraphProto>())
                {
                    AddNames(subgraph, names);
                }
            }
        }
    }
}
