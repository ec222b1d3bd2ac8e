using TorchSharp;
using static TorchSharp.torch;

namespace ModelFactory;

/// <summary>
/// A layer list that builds the TorchSharp module to train; the trained module is exported to ONNX by
/// Compress.Core's <c>SequentialExporter</c> (BatchNorm as BatchNormalization; the pipeline folds it).
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
    public static TorchSharp.Modules.Sequential Build(IReadOnlyList<Layer> layers) =>
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
}
