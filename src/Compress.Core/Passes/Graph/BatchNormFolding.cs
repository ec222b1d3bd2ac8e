using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Torch;
using static TorchSharp.torch;

namespace Compress.Core.Passes.Graph;

/// <summary>
/// Folds an inference-mode BatchNormalization into the Conv that feeds it (and nothing else):
/// W' = W·γ/√(σ²+ε) per output channel, b' = (b − μ)·γ/√(σ²+ε) + β. Quantizing W before a BN that divides by a
/// tiny σ would amplify the weight error in that channel; folded, the error is relative to what the layer computes.
/// </summary>
public static class BatchNormFolding
{
    public static int Apply(OnnxModel model)
    {
        var graph = model.Graph;
        var folded = 0;
        foreach (var bn in graph.Nodes.Where(n => n.OpType == "BatchNormalization" && OnnxModel.NormalizeDomain(n.Domain) == "").ToList())
        {
            if (bn.Output.Count != 1 || bn.Input.Count != 5 || graph.GetProducer(bn.Input[0]) is not { OpType: "Conv" } conv
                || conv.Output.Count != 1 || graph.GetConsumers(conv.Output[0]).Count != 1 || graph.IsGraphOutput(conv.Output[0])
                || graph.GetInitializer(conv.Input[1]) is not { } weight || weight.DataType != (int)TensorProto.Types.DataType.Float
                || graph.GetConsumers(conv.Input[1]).Count != 1
                || bn.Input.Skip(1).Any(i => graph.GetInitializer(i) is not { DataType: (int)TensorProto.Types.DataType.Float }))
            {
                continue;
            }

            TorchRuntime.EnsureLoaded();
            using var scope = NewDisposeScope();
            var epsilon = bn.Attribute.FirstOrDefault(a => a.Name == "epsilon")?.F ?? 1e-5f;
            var gamma = model.ToTorch(graph.GetInitializer(bn.Input[1])!);
            var beta = model.ToTorch(graph.GetInitializer(bn.Input[2])!);
            var mean = model.ToTorch(graph.GetInitializer(bn.Input[3])!);
            var variance = model.ToTorch(graph.GetInitializer(bn.Input[4])!);
            var factor = gamma / (variance + epsilon).sqrt();
            var w = model.ToTorch(weight);
            var biasTensor = conv.Input.Count > 2 && conv.Input[2].Length > 0 ? graph.GetInitializer(conv.Input[2]) : null;
            if (conv.Input.Count > 2 && conv.Input[2].Length > 0 && (biasTensor is null || graph.GetConsumers(biasTensor.Name).Count != 1))
            {
                continue;
            }

            var b = biasTensor is null ? zeros_like(mean) : model.ToTorch(biasTensor);
            model.ReplaceData(weight, (w * factor.reshape([-1, .. Enumerable.Repeat(1L, (int)w.dim() - 1)])).ToOnnx(weight.Name));
            var newBias = ((b - mean) * factor + beta).ToOnnx(biasTensor?.Name ?? graph.UniqueName(conv.Output[0] + "_bias"));
            if (biasTensor is null)
            {
                graph.AddInitializer(newBias);
                while (conv.Input.Count < 3)
                {
                    conv.Input.Add("");
                }

                conv.Input[2] = newBias.Name;
            }
            else
            {
                model.ReplaceData(biasTensor, newBias);
            }

            var parameters = bn.Input.Skip(1).ToList();
            conv.Output[0] = bn.Output[0];
            graph.Remove(bn);
            foreach (var p in parameters)
            {
                graph.RemoveInitializerIfUnused(p);
            }

            folded++;
        }

        return folded;
    }
}
