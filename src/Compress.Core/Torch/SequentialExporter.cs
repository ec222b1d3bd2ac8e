using Compress.Core.Diagnostics;
using Compress.Core.Onnx;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Core.Torch;

/// <summary>
/// Exports a TorchSharp <see cref="Sequential"/> (nested ones included) to ONNX (opset 17), layer by layer, in
/// inference semantics: Linear → Gemm, Conv1d/Conv2d → Conv, BatchNorm1d/2d → BatchNormalization (running
/// statistics), ReLU → Relu, MaxPool2d → MaxPool, AvgPool2d → AveragePool, Flatten → Flatten (or Reshape),
/// Dropout → nothing. Initializers are named after the module's state-dict keys. Any other module, or an option
/// these ONNX operators cannot express, is refused with CMP0041 naming the layer.
/// </summary>
public static class SequentialExporter
{
    /// <param name="inputShape">Dimensions of the input: numbers, or names for symbolic ones (e.g. <c>"batch"</c>).</param>
    public static OnnxModel Export(Sequential model, object[] inputShape, string graphName = "model", string inputName = "input", string outputName = "output")
    {
        TorchRuntime.EnsureLoaded();
        var builder = new GraphBuilder(graphName).Input(inputName, DataType.Float, inputShape);
        var layers = Flatten(model, "").ToList();
        var current = inputName;
        using (no_grad())
        {
            for (var i = 0; i < layers.Count; i++)
            {
                var (name, module) = layers[i];
                var output = i == layers.Count - 1 ? outputName : $"{name}_out";
                if (Layer(builder, name, module, current, output))
                {
                    current = output;
                }
            }
        }

        if (current != outputName)
        {
            builder.Node("Identity", [current], [outputName], "output");
        }

        // The output's shape: the first dimension follows the input's, the others come from one forward pass.
        using var probe = zeros(inputShape.Select(d => d is string ? 1L : Convert.ToInt64(d, System.Globalization.CultureInfo.InvariantCulture)).ToArray());
        var training = model.training;
        model.eval();
        using var result = model.call(probe);
        model.train(training);
        object[] outputShape = [inputShape[0], .. result.shape.Skip(1).Cast<object>()];
        return builder.Output(outputName, DataType.Float, outputShape).Build(producer: "Compress.Build SequentialExporter");
    }

    private static IEnumerable<(string Name, nn.Module Module)> Flatten(nn.Module module, string prefix)
    {
        foreach (var (name, child) in module.named_children())
        {
            var full = prefix.Length == 0 ? name : $"{prefix}.{name}";
            if (child is Sequential nested)
            {
                foreach (var inner in Flatten(nested, full))
                {
                    yield return inner;
                }
            }
            else
            {
                yield return (full, child);
            }
        }
    }

    /// <summary>Adds one layer's nodes; false for a layer that exports to nothing (Dropout).</summary>
    private static bool Layer(GraphBuilder builder, string name, nn.Module module, string input, string output)
    {
        switch (module)
        {
            case Linear linear:
                var linearInputs = new List<string> { input, Weight(builder, $"{name}.weight", linear.weight) };
                if (linear.bias is { } linearBias)
                {
                    linearInputs.Add(Weight(builder, $"{name}.bias", linearBias));
                }

                builder.Node("Gemm", [.. linearInputs], [output], name, "", OnnxAttribute.Int("transB", 1));
                return true;
            case Convolution conv when !conv.transposed:
                if (conv.padding_mode != PaddingModes.Zeros || conv.padding_type is not null)
                {
                    throw Refuse(name, module, $"padding mode {conv.padding_mode}{(conv.padding_type is null ? "" : $" / padding '{conv.padding_type}'")} (only explicit zero padding exports)");
                }

                var convInputs = new List<string> { input, Weight(builder, $"{name}.weight", conv.weight) };
                if (conv.bias is { } convBias)
                {
                    convInputs.Add(Weight(builder, $"{name}.bias", convBias));
                }

                builder.Node("Conv", [.. convInputs], [output], name, "",
                    OnnxAttribute.Ints("kernel_shape", conv.kernel_size), OnnxAttribute.Ints("strides", conv.stride),
                    OnnxAttribute.Ints("dilations", conv.dilation), OnnxAttribute.Ints("pads", Pads(conv.padding, conv.kernel_size.Length)),
                    OnnxAttribute.Int("group", conv.groups));
                return true;
            case BatchNorm norm when norm is BatchNorm1d or BatchNorm2d:
                if (norm.running_mean is null || norm.running_var is null)
                {
                    throw Refuse(name, module, "no running statistics (track_running_stats = false)");
                }

                var channels = norm.num_features;
                builder.Node("BatchNormalization", [input,
                    Weight(builder, $"{name}.weight", norm.weight ?? ones(channels)), Weight(builder, $"{name}.bias", norm.bias ?? zeros(channels)),
                    Weight(builder, $"{name}.running_mean", norm.running_mean), Weight(builder, $"{name}.running_var", norm.running_var)],
                    [output], name, "", OnnxAttribute.Float("epsilon", (float)norm.eps));
                return true;
            case ReLU:
                builder.Node("Relu", [input], [output], name);
                return true;
            case MaxPool2d pool:
                var poolStride = pool.stride ?? pool.kernel_size;
                builder.Node("MaxPool", [input], [output], name, "",
                    OnnxAttribute.Ints("kernel_shape", pool.kernel_size), OnnxAttribute.Ints("strides", poolStride),
                    OnnxAttribute.Ints("pads", Pads(pool.padding, pool.kernel_size.Length)), OnnxAttribute.Ints("dilations", pool.dilation ?? [1, 1]),
                    OnnxAttribute.Int("ceil_mode", pool.ceil_mode ? 1 : 0));
                return true;
            case AvgPool2d average:
                if (average.divisor_override is not null)
                {
                    throw Refuse(name, module, "divisor_override");
                }

                builder.Node("AveragePool", [input], [output], name, "",
                    OnnxAttribute.Ints("kernel_shape", average.kernel_size), OnnxAttribute.Ints("strides", average.stride ?? average.kernel_size),
                    OnnxAttribute.Ints("pads", Pads(average.padding, average.kernel_size.Length)),
                    OnnxAttribute.Int("ceil_mode", average.ceil_mode ? 1 : 0), OnnxAttribute.Int("count_include_pad", average.count_include_pad ? 1 : 0));
                return true;
            case TorchSharp.Modules.Flatten flatten:
                if (flatten.start_dim != 1 || flatten.end_dim != -1)
                {
                    throw Refuse(name, module, $"start_dim {flatten.start_dim}, end_dim {flatten.end_dim} (exported: start_dim 1, end_dim -1)");
                }

                builder.Node("Flatten", [input], [output], name, "", OnnxAttribute.Int("axis", flatten.start_dim));
                return true;
            case Dropout:
                return false;
            default:
                throw Refuse(name, module, "this layer type");
        }
    }

    private static string Weight(GraphBuilder builder, string name, Tensor value)
    {
        builder.Initializer(value.detach().cpu().to_type(ScalarType.Float32).contiguous().ToOnnx(name));
        return name;
    }

    private static long[] Pads(long[]? padding, int rank)
    {
        var p = padding ?? new long[rank];
        return [.. p, .. p];
    }

    private static CompressException Refuse(string name, nn.Module module, string what) =>
        CompressException.Error(DiagnosticCodes.ExportUnsupported,
            $"cannot export layer '{name}' ({module.GetType().Name}) to ONNX: {what}. Exported: Linear, Conv1d/Conv2d, BatchNorm1d/2d, ReLU, MaxPool2d, AvgPool2d, Flatten, Dropout");
}
