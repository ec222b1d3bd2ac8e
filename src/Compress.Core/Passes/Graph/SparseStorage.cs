using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Google.Protobuf;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Core.Passes.Graph;

/// <summary>
/// Stores mostly-zero initializers as <c>sparse_initializer</c> (values + int64 linear indices; ONNX Runtime
/// densifies them at load) when that makes the file smaller: for float32 above ~67% zeros, for int8 above ~89%.
/// </summary>
public static class SparseStorage
{
    /// <summary>Smaller tensors (scales, zero points, biases) gain nothing worth a format change.</summary>
    public const int MinElements = 1024;

    public static int Apply(OnnxModel model, Dictionary<string, LayerRecord> layers)
    {
        var graph = model.Graph;
        var converted = 0;
        foreach (var tensor in graph.Proto.Initializer.ToList())
        {
            var width = OnnxElementTypes.BitWidth(tensor.DataType) / 8;
            if (width == 0 || !tensor.HasRawData || tensor.DataType is (int)DataType.Bool || tensor.Dims.Count == 0 || tensor.RawData.Length / width < MinElements)
            {
                continue;
            }

            var raw = tensor.RawData.Span;
            var count = raw.Length / width;
            var indices = new List<long>();
            for (var i = 0; i < count; i++)
            {
                if (raw.Slice(i * width, width).IndexOfAnyExcept((byte)0) >= 0)
                {
                    indices.Add(i);
                }
            }

            if ((long)indices.Count * (width + 8) + 64 >= raw.Length)
            {
                continue;
            }

            var values = new byte[indices.Count * width];
            for (var j = 0; j < indices.Count; j++)
            {
                raw.Slice((int)indices[j] * width, width).CopyTo(values.AsSpan(j * width));
            }

            var sparse = new SparseTensorProto
            {
                Values = new TensorProto { Name = tensor.Name, DataType = tensor.DataType, RawData = ByteString.CopyFrom(values), Dims = { indices.Count } },
                Indices = OnnxTensors.Create(tensor.Name + "_indices", indices.ToArray(), indices.Count),
                Dims = { tensor.Dims },
            };
            graph.Proto.Initializer.Remove(tensor);
            graph.Proto.SparseInitializer.Add(sparse);
            if (layers.TryGetValue(tensor.Name, out var record))
            {
                record.Format += " sparse";
            }

            converted++;
        }

        return converted;
    }
}
