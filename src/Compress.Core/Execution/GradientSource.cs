using Compress.Core.Calibration;
using Compress.Core.Data;
using Compress.Core.Onnx;
using Compress.Core.Torch;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Execution;

/// <summary>
/// Gradients of the cross-entropy loss with respect to chosen weights, on calibration samples, through the
/// <see cref="TorchGraph"/> executor (model in inference mode). Targets are the calibration labels when the spec
/// names them, else the original model's own top-1 predictions (fixed at construction, so later pruning steps are
/// pulled back towards what the uncompressed model said). The loss reads the first graph output as logits; an
/// output computed by Softmax is read before it. Logits with more than two dimensions ([N, T, C]) count every
/// position as a prediction.
/// </summary>
public sealed class GradientSource : IGradientModel, IDisposable
{
    private readonly TorchGraph _graph;
    private readonly CalibrationSet _data;
    private readonly IReadOnlyList<string> _weights;
    private readonly string _logits;
    private readonly bool _fromSoftmax;
    private readonly Tensor _targets;

    public GradientSource(OnnxModel model, CalibrationSet data, IReadOnlyList<string> weights)
    {
        _graph = new TorchGraph(model);
        _data = data;
        _weights = weights;
        var output = _graph.Outputs[0];
        var producer = model.Graph.GetProducer(output);
        _fromSoftmax = producer?.OpType == "Softmax";
        _logits = _fromSoftmax ? producer!.Input[0] : output;
        using (no_grad())
        {
            // Labels serve when the logits hold one prediction per sample ([N, C]); one small run tells.
            if (data.Labels is { } labels && LogitsRank() == 2)
            {
                _targets = tensor(labels);
                Source = "labels";
            }
            else
            {
                var predictions = new List<Tensor>();
                for (var start = 0; start < data.Count; start += 256)
                {
                    using var scope = NewDisposeScope();
                    predictions.Add(Logits(start, Math.Min(256, data.Count - start)).argmax(-1).MoveToOuterDisposeScope());
                }

                _targets = cat(predictions, 0).flatten();
                Source = "the model's own predictions";
            }
        }
    }

    public int Count => _data.Count;

    public string Source { get; }

    public Tensor Weight(string name) => _graph.Weight(name);

    public void SetWeight(string name, Tensor value) => _graph.SetWeight(name, value);

    /// <summary>∂L/∂w for each chosen weight, L the mean cross-entropy over samples [start, start + count).</summary>
    public Tensor[] Gradients(int start, int count)
    {
        var leaves = Leaves();
        using var scope = NewDisposeScope();
        var loss = Loss(start, count);
        var gradients = autograd.grad([loss], leaves);
        return gradients.Select(g => g.detach().MoveToOuterDisposeScope()).ToArray();
    }

    /// <summary>
    /// One Hutchinson probe (algorithms.md §5): vᵀ(Hv) for each chosen weight, v a Rademacher vector drawn from
    /// <paramref name="random"/> and H the Hessian of the mean loss over samples [start, start + count) with respect to that
    /// weight, Hv by double backpropagation. Its expectation over v is the trace of the weight's Hessian block.
    /// </summary>
    public double[] HessianProbe(int start, int count, Generator random)
    {
        var leaves = Leaves();
        using var scope = NewDisposeScope();
        var loss = Loss(start, count);
        var gradients = autograd.grad([loss], leaves, retain_graph: true, create_graph: true);
        var probes = leaves.Select(l => randint(0, 2, l.shape, dtype: ScalarType.Float32, generator: random).mul_(2).sub_(1)).ToArray();
        var product = gradients.Select((g, i) => (g * probes[i]).sum()).Aggregate((a, b) => a + b);
        var hv = autograd.grad([product], leaves, allow_unused: true);
        return hv.Select((h, i) => h is null || h.IsInvalid ? 0 : (h * probes[i]).sum().ToDouble()).ToArray();
    }

    /// <summary>The chosen weights as fresh autograd leaves, set into the graph.</summary>
    private Tensor[] Leaves() => _weights.Select(n =>
    {
        var leaf = _graph.Weight(n).detach().requires_grad_(true);
        _graph.SetWeight(n, leaf);
        return leaf;
    }).ToArray();

    /// <summary>The mean cross-entropy over samples [start, start + count) against the targets.</summary>
    private Tensor Loss(int start, int count)
    {
        var logits = Logits(start, count);
        var targets = _targets.narrow(0, Offset(start, logits), logits.numel() / logits.shape[^1]);
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[^1]), targets);
    }

    private long LogitsRank()
    {
        using var scope = NewDisposeScope();
        return Logits(0, Math.Min(2, _data.Count)).dim();
    }

    private long Offset(int start, Tensor logits) => start * (logits.numel() / logits.shape[^1] / logits.shape[0]);

    private Tensor Logits(int start, int count)
    {
        var inputs = _data.Inputs.ToDictionary(p => p.Key, p => p.Value.ToTorch(start, count));
        var values = _graph.Run(inputs, [_logits]);
        var logits = values[_logits];
        return _fromSoftmax ? logits.log_softmax(-1) : logits;
    }

    public void Dispose()
    {
        _graph.Dispose();
        _targets.Dispose();
    }
}
