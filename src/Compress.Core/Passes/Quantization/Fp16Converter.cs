using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Spec.Kernels;
using Compress.Core.Torch;
using Compress.Spec;
using Compress.Spec.Methods;
using static TorchSharp.torch;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Core.Passes.Quantization;

/// <summary>
/// fp16 storage with the model's float32 inputs and outputs kept. Every float initializer read only by ops
/// becomes float16; a node whose op has an fp16 kernel on the target (ONNX Runtime CPU) reads it directly only if
/// all its float inputs are fp16 — in practice ONNX Runtime's CPU provider has fp16 kernels for data movement,
/// not for arithmetic, so arithmetic stays float32 behind one Cast per weight, which ONNX Runtime folds at load.
/// </summary>
[ImplementsMethod(RtnMethod.Name, Scheme = QuantizeSchemes.Fp16)]
public sealed class Fp16Converter(QuantizeStep step) : ICompressionPass
{
    public string Name => "quantize/fp16";

    public void Apply(CompressionContext context)
    {
        TorchRuntime.EnsureLoaded();
        var model = context.Model;
        var graph = model.Graph;
        var opset = model.GetOpsetVersion("") ?? 1;
        var converted = 0;
        foreach (var initializer in graph.Proto.Initializer.Where(t => t.DataType == (int)DataType.Float).ToList())
        {
            var consumers = graph.GetConsumers(initializer.Name);
            if (consumers.Count == 0 || graph.IsGraphOutput(initializer.Name) || !consumers.All(c => WeightSelection.Matches(c, step))
                || OnnxElementTypes.ElementCount(initializer.Dims) < 16)
            {
                continue; // scalars and tiny vectors gain nothing and are often shape arithmetic
            }

            if (context.Plan.For(step, initializer.Name).Bits == 32)
            {
                continue; // an allocation keeps this weight float32
            }

            using var scope = NewDisposeScope();
            var values = model.ToTorch(initializer);
            var half = values.to_type(ScalarType.Float16);
            var record = context.Layer(initializer.Name, OnnxGraph.Describe(consumers[0]), consumers[0].OpType, values.numel());
            record.Format = new Plans.WeightFormat(Plans.WeightEncoding.Float16, 16);
            record.RelativeError += Quantization.WeightQuantization.RelativeError(values, half.to_type(ScalarType.Float32));

            record.Store(StoreHalf(graph, initializer.Name, half));
            converted++;
        }

        var fp16Ops = graph.Nodes.Select(n => n.OpType).Distinct().Count(op => OrtKernelTable.Cpu.Supports("", op, opset, "float16"));
        context.Notes.Add($"fp16: {converted} weights stored as float16; arithmetic stays float32 (ONNX Runtime's CPU provider has no fp16 kernel for it; {fp16Ops} op types of this model have one)");
        context.Progress($"quantize: fp16 storage for {converted} weights");
    }

    /// <summary>
    /// Replaces a float initializer by its float16 copy behind one Cast to float32 (which ONNX Runtime folds at load).
    /// The Cast writes a new name its readers are redirected to, or — <paramref name="castKeepsName"/> — the initializer's
    /// own name, so readers stay as they are and the file gains one name less. Returns the float16 initializer's name.
    /// </summary>
    internal static string StoreHalf(OnnxGraph graph, string name, Tensor half, bool castKeepsName = false)
    {
        var halfName = graph.UniqueName(name + "_fp16");
        graph.AddInitializer(half.ToOnnx(halfName));
        var cast = new NodeProto { OpType = "Cast", Input = { halfName } };
        cast.Attribute.Add(OnnxAttribute.Int("to", (long)DataType.Float));
        if (castKeepsName)
        {
            graph.RemoveInitializer(name);
            cast.Output.Add(name);
            graph.Prepend(cast);
            return halfName;
        }

        cast.Name = graph.UniqueName(name + "_cast");
        cast.Output.Add(graph.UniqueName(name + "_fp32"));
        graph.Prepend(cast);
        graph.RedirectConsumers(name, cast.Output[0], except: cast, graphOutputs: false);
        graph.RemoveInitializer(name);
        return halfName;
    }
}
