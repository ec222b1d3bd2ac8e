using Compress.Core.Onnx;
using Compress.Core.Torch;
using TorchSharp;
using static TorchSharp.torch;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace ModelFactory;

/// <summary>
/// A layer list that both builds the TorchSharp module to train and exports the trained weights to ONNX,
/// so the two can never disagree. BatchNorm after a convolution is folded into it on export.
/// </summary>
internal abstract record Layer(string Name);

internal sealed record Dense(string Name, int In, int Out) : Layer(Name);

internal sealed record Conv(string Name, int In, int Out, int Kernel, int Padding) : Layer(Name);

internal sealed record BatchNorm(string Name, int Channels) : Layer(Name);

internal sealed record Relu(string Name) : Layer(Name);

internal sealed record MaxPool(string Name, int Kernel) : Layer(Name);

internal sealed record Flatten(string Name) : Layer(Name);

internal static class Architecture
{
    public static nn.Module<Tensor, Tensor> Build(IReadOnlyList<Layer> layers) =>
        nn.Sequential(layers.Select(l => (l.Name, l switch
        {
            Dense d => (nn.Module<Tensor, Tensor>)nn.Linear(d.In, d.Out),
            Conv c => nn.Conv2d(c.In, c.Out, c.Kernel, padding: c.Padding),
            BatchNorm b => nn.BatchNorm2d(b.Channels),
            Relu => nn.ReLU(),
            MaxPool p => nn.MaxPool2d(p.Kernel),
            Flatten => nn.Flatten(),
            _ => throw new NotSupportedException(l.GetType().Name),
        })).ToArray());

    public static OnnxModel Export(string graphName, IReadOnlyList<Layer> layers, nn.Module<Tensor, Tensor> module, object[] inputShape)
    {
        var state = module.state_dict();
        Tensor P(string name) => state[name].detach().cpu();
        var builder = new GraphBuilder(graphName).Input("input", DataType.Float, inputShape);
        var current = "input";
        for (var i = 0; i < layers.Count; i++)
        {
            var layer = layers[i];
            var output = i == layers.Count - 1 ? "logits" : $"{layer.Name}_out";
            switch (layer)
            {
                case Dense d:
                    builder.Initializer(P($"{d.Name}.weight").ToOnnx($"{d.Name}.weight"))
                        .Initializer(P($"{d.Name}.bias").ToOnnx($"{d.Name}.bias"))
                        .Node("Gemm", [current, $"{d.Name}.weight", $"{d.Name}.bias"], [output], d.Name, "", OnnxAttribute.Int("transB", 1));
                    break;
                case Conv c:
                    var weight = P($"{c.Name}.weight");
                    var bias = P($"{c.Name}.bias");
                    if (i + 1 < layers.Count && layers[i + 1] is BatchNorm bn)
                    {
                        // Fold: w' = w·γ/√(σ²+ε), b' = (b − μ)·γ/√(σ²+ε) + β.
                        var factor = P($"{bn.Name}.weight") / (P($"{bn.Name}.running_var") + 1e-5).sqrt();
                        weight = weight * factor.reshape(-1, 1, 1, 1);
                        bias = (bias - P($"{bn.Name}.running_mean")) * factor + P($"{bn.Name}.bias");
                        i++;
                        output = $"{bn.Name}_out";
                    }

                    builder.Initializer(weight.ToOnnx($"{c.Name}.weight")).Initializer(bias.ToOnnx($"{c.Name}.bias"))
                        .Node("Conv", [current, $"{c.Name}.weight", $"{c.Name}.bias"], [output], c.Name, "",
                            OnnxAttribute.Ints("kernel_shape", c.Kernel, c.Kernel), OnnxAttribute.Ints("pads", c.Padding, c.Padding, c.Padding, c.Padding));
                    break;
                case Relu:
                    builder.Node("Relu", [current], [output], layer.Name);
                    break;
                case MaxPool p:
                    builder.Node("MaxPool", [current], [output], layer.Name, "",
                        OnnxAttribute.Ints("kernel_shape", p.Kernel, p.Kernel), OnnxAttribute.Ints("strides", p.Kernel, p.Kernel));
                    break;
                case Flatten:
                    builder.Node("Flatten", [current], [output], layer.Name, "", OnnxAttribute.Int("axis", 1));
                    break;
                default:
                    throw new NotSupportedException($"cannot export {layer.GetType().Name} on its own");
            }

            current = output;
        }

        return builder.Output("logits", DataType.Float, inputShape[0], 10).Build(producer: "Compress.Build ModelFactory");
    }
}
