using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Torch;
using static TorchSharp.torch;

namespace Compress.Core.Passes.Quantization;

/// <summary>
/// What an integer step leaves float beside its weights — the biases added after each MatMul, LayerNormalization's scale
/// and shift — stored as float16 behind a Cast that ONNX Runtime folds at load (algorithms.md §11): the arithmetic stays
/// float32, the file loses half of those bytes, and the rounding (relative 2⁻¹¹) is far below the int8 grid's. On a
/// 128-wide encoder they are 1 % of the weights' float32 bytes, 4 % of its int8 file. Only 1-D vectors of at least 16
/// elements read by Add, Sub, Mul, Div or LayerNormalization alone: scalars and anything a shape or a kernel reads stay.
/// </summary>
public static class FloatVectors
{
    private static readonly HashSet<string> Readers = ["Add", "Sub", "Mul", "Div", "LayerNormalization"];

    /// <summary>Stores the eligible vectors as float16 and says so in the notes; returns how many.</summary>
    public static int ToFloat16(CompressionContext context, string scheme)
    {
        var graph = context.Model.Graph;
        var converted = 0;
        long bytes = 0;
        foreach (var vector in graph.Proto.Initializer.Where(t => t.DataType == (int)TensorProto.Types.DataType.Float && t.Dims.Count == 1 && t.Dims[0] >= 16).ToList())
        {
            var readers = graph.GetConsumers(vector.Name);
            if (readers.Count == 0 || graph.IsGraphOutput(vector.Name)
                || !readers.All(r => string.IsNullOrEmpty(r.Domain) && Readers.Contains(r.OpType) && r.Input.Count(i => i == vector.Name) == 1 && (r.OpType != "LayerNormalization" || r.Input[0] != vector.Name)))
            {
                continue;
            }

            using var scope = NewDisposeScope();
            Fp16Converter.StoreHalf(graph, vector.Name, context.Model.ToTorch(vector).to_type(ScalarType.Float16), castKeepsName: true);
            bytes += 2 * vector.Dims[0];
            converted++;
        }

        if (converted > 0)
        {
            context.Notes.Add($"{scheme}: {converted} bias and normalization vectors stored as float16 behind a Cast folded at load ({bytes:N0} bytes saved)");
        }

        return converted;
    }
}
