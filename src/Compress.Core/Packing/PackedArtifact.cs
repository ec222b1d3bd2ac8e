using Compress.Core.Diagnostics;
using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Runtime.Packing;
using Google.Protobuf;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Core.Packing;

/// <summary>
/// The two shipped forms of a model after <c>pack</c> (docs/packed-format.md): the packed artifact (<c>.cpack</c>:
/// every float32 initializer with at most 256 distinct nonzero values as codebook + rANS-coded indices, the rest of the
/// model Brotli-compressed; <see cref="PackedModel"/> expands it), and the ONNX-only form (each such tensor as a
/// codebook, integer indices and <c>Cast → Gather</c>, which ONNX Runtime constant-folds at load). Both give back
/// exactly the float32 values of the working model; the packed bytes are expanded and compared before they are written.
/// </summary>
public static class PackedArtifact
{
    /// <summary>Smaller tensors stay in the compressed graph: a record's codebook and tables would outweigh them.</summary>
    public const int MinElements = 16;

    /// <summary>The packed artifact's bytes; checked to expand to the model's own values.</summary>
    public static byte[] Pack(OnnxModel model, string outputPath)
    {
        RefuseExternal(model, outputPath);
        var graph = model.Proto.Graph;
        var shared = Shareable(model).ToList();
        var tensors = shared.Select(t => new SharedTensor(t.Tensor.Name, t.Tensor.Dims.ToArray(), t.Values)).ToList();
        byte[] rest, graphBytes;
        var positions = shared.Select(s => graph.Initializer.IndexOf(s.Tensor)).ToList();
        try
        {
            foreach (var s in shared)
            {
                graph.Initializer.Remove(s.Tensor);
            }

            graphBytes = graph.ToByteArray();
            model.Proto.Graph = null;
            rest = model.Proto.ToByteArray();
        }
        finally
        {
            model.Proto.Graph = graph;
            for (var i = 0; i < shared.Count; i++)
            {
                graph.Initializer.Insert(positions[i], shared[i].Tensor);
            }
        }

        var packed = PackedModelWriter.Write(rest, graphBytes, tensors);
        Verify(packed, model, tensors, outputPath);
        return packed;
    }

    /// <summary>
    /// The ONNX-only form: each shareable tensor of at least <see cref="MinElements"/> values becomes
    /// <c>Gather(codebook, Cast(indices))</c> with uint8 indices (uint16 past 255 values), index 0 the pruned zero.
    /// </summary>
    public static ModelProto GatherForm(OnnxModel model, string outputPath)
    {
        RefuseExternal(model, outputPath);
        var proto = model.Proto.Clone();
        var graph = proto.Graph;
        var taken = new HashSet<string>(graph.Initializer.Select(t => t.Name).Concat(graph.Node.SelectMany(n => n.Output)).Concat(graph.Input.Select(i => i.Name)), StringComparer.Ordinal);
        var inputs = graph.Input.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
        var nodes = new List<NodeProto>();
        foreach (var (tensor, values) in Shareable(model).Where(s => !inputs.Contains(s.Tensor.Name)).ToList())
        {
            var codebook = PackedModelWriter.Codebook(values)!;
            var wide = codebook.Length > byte.MaxValue;
            var index = new Dictionary<uint, int>();
            for (var i = 0; i < codebook.Length; i++)
            {
                index[BitConverter.SingleToUInt32Bits(codebook[i])] = i + 1;
            }

            var raw = new byte[values.Length * (wide ? 2 : 1)];
            for (var i = 0; i < values.Length; i++)
            {
                var bits = BitConverter.SingleToUInt32Bits(values[i]);
                var symbol = bits == 0 ? 0 : index[bits];
                if (wide)
                {
                    BitConverter.TryWriteBytes(raw.AsSpan(2 * i), (ushort)symbol);
                }
                else
                {
                    raw[i] = (byte)symbol;
                }
            }

            var (codebookName, indicesName, castName) = (Unique(taken, tensor.Name + "_codebook"), Unique(taken, tensor.Name + "_indices"), Unique(taken, tensor.Name + "_indices_int32"));
            var table = new TensorProto { Name = codebookName, DataType = (int)DataType.Float, RawData = ByteString.CopyFrom(new[] { 0f }.Concat(codebook).SelectMany(BitConverter.GetBytes).ToArray()) };
            table.Dims.Add(codebook.Length + 1);
            var indices = new TensorProto { Name = indicesName, DataType = (int)(wide ? DataType.Uint16 : DataType.Uint8), RawData = ByteString.CopyFrom(raw) };
            indices.Dims.Add(tensor.Dims);
            var position = graph.Initializer.IndexOf(graph.Initializer.First(t => t.Name == tensor.Name));
            graph.Initializer[position] = indices;
            graph.Initializer.Insert(position, table);
            nodes.Add(new NodeProto { OpType = "Cast", Name = Unique(taken, tensor.Name + "_cast"), Input = { indicesName }, Output = { castName }, Attribute = { OnnxAttribute.Int("to", (long)DataType.Int32) } });
            nodes.Add(new NodeProto { OpType = "Gather", Name = Unique(taken, tensor.Name + "_gather"), Input = { codebookName, castName }, Output = { tensor.Name }, Attribute = { OnnxAttribute.Int("axis", 0) } });
        }

        // Producers first: the graph stays topologically sorted.
        for (var i = nodes.Count - 1; i >= 0; i--)
        {
            graph.Node.Insert(0, nodes[i]);
        }

        return proto;
    }

    /// <summary>Float32 initializers of at least <see cref="MinElements"/> values with at most 256 distinct nonzero ones, in graph order.</summary>
    private static IEnumerable<(TensorProto Tensor, float[] Values)> Shareable(OnnxModel model)
    {
        foreach (var tensor in model.Proto.Graph.Initializer)
        {
            if (tensor.DataType != (int)DataType.Float || OnnxElementTypes.ElementCount(tensor.Dims) < MinElements)
            {
                continue;
            }

            float[] values;
            using (var data = model.OpenTensorData(tensor))
            {
                values = data.As<float>().ToArray();
            }

            if (PackedModelWriter.Codebook(values) is not null)
            {
                yield return (tensor, values);
            }
        }
    }

    /// <summary>Expands the packed bytes and compares every shared tensor with the values they came from.</summary>
    private static void Verify(byte[] packed, OnnxModel model, List<SharedTensor> tensors, string outputPath)
    {
        var expanded = new ModelProto();
        expanded.MergeFrom(PackedModel.Expand(packed, outputPath));
        var byName = expanded.Graph.Initializer.ToDictionary(t => t.Name, StringComparer.Ordinal);
        var mismatch = tensors.FirstOrDefault(t => !byName.TryGetValue(t.Name, out var e) || !e.RawData.Span.SequenceEqual(System.Runtime.InteropServices.MemoryMarshal.AsBytes(t.Values.AsSpan())));
        if (mismatch is not null || expanded.Graph.Node.Count != model.Proto.Graph.Node.Count || expanded.Graph.Initializer.Count != model.Proto.Graph.Initializer.Count)
        {
            throw CompressException.Error(DiagnosticCodes.InternalError, $"the packed artifact does not expand to the compressed model{(mismatch is null ? "" : $" ('{mismatch.Name}' differs)")}", outputPath);
        }
    }

    private static void RefuseExternal(OnnxModel model, string outputPath)
    {
        if (model.ExternalData.Count > 0)
        {
            throw CompressException.Error(DiagnosticCodes.PackExternalData,
                $"the model keeps {model.ExternalData.Count} tensors in external data; a packed model is one file under ONNX's 2 GB limit: exclude the largest layers from 'pack' or ship the unpacked model", outputPath);
        }
    }

    private static string Unique(HashSet<string> taken, string name)
    {
        var candidate = name;
        for (var i = 1; !taken.Add(candidate); i++)
        {
            candidate = $"{name}_{i}";
        }

        return candidate;
    }
}
