using Compress.Core.Diagnostics;
using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Torch;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Execution;

/// <summary>
/// Executes an ONNX graph with TorchSharp operators (<see cref="TorchOps"/>), so gradients of a loss with respect
/// to the model's weights can be taken (SNIP, WoodFisher). The initializers are loaded once as tensors; a weight
/// can be made a leaf that requires grad, or replaced. A model using an operator outside the executor's set is
/// refused up front with CMP0040 naming every missing operator. Intermediate values are released after their
/// last use.
/// </summary>
public sealed class TorchGraph : IDisposable
{
    private readonly IReadOnlyList<NodeProto> _order;
    private readonly Dictionary<string, Tensor> _initializers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _lastUse = new(StringComparer.Ordinal);
    private readonly long _opset;

    /// <summary>
    /// ONNX Runtime's contrib operators the executor runs: standard namesakes (QDQ with per-axis scales before opset 13)
    /// and the block-quantized embedding lookup the quantizers write; and the finetune step's fake quantization.
    /// </summary>
    private static readonly HashSet<string> ContribOperators = ["com.microsoft.QuantizeLinear", "com.microsoft.DequantizeLinear", "com.microsoft.GatherBlockQuantized", "compress.training.FakeQuantize"];

    public TorchGraph(OnnxModel model)
    {
        TorchRuntime.EnsureLoaded();
        var missing = model.Graph.Nodes.Where(n => !string.IsNullOrEmpty(n.Domain) && n.Domain != "ai.onnx" && !ContribOperators.Contains($"{n.Domain}.{n.OpType}") || !TorchOps.IsSupported(n.OpType))
            .GroupBy(n => string.IsNullOrEmpty(n.Domain) ? n.OpType : $"{n.Domain}.{n.OpType}").ToList();
        if (missing.Count > 0)
        {
            throw CompressException.Error(DiagnosticCodes.OperatorNotExecutable,
                $"the TorchSharp executor (used for gradients) cannot run {string.Join(", ", missing.Select(g => $"{g.Key} ({g.Count()}×, e.g. '{OnnxGraph.Describe(g.First())}')"))}; " +
                $"it runs {string.Join(", ", TorchOps.Supported.Order(StringComparer.Ordinal))}. Use a method that needs no gradients ('magnitude', 'obs').",
                model.Path);
        }

        var nonTensors = model.Proto.Graph.Input.Concat(model.Proto.Graph.Output).Where(v => v.Type is { } t && t.TensorType is null).Select(v => v.Name).ToList();
        if (nonTensors.Count > 0)
        {
            throw CompressException.Error(DiagnosticCodes.OperatorNotExecutable,
                $"the TorchSharp executor runs tensors only; {string.Join(", ", nonTensors.Select(n => $"'{n}'"))} {(nonTensors.Count == 1 ? "is a" : "are")} sequence, map or optional value(s)", model.Path);
        }

        _order = model.Graph.TopologicalOrder();
        _opset = model.GetOpsetVersion("") ?? 1;
        foreach (var initializer in model.Proto.Graph.Initializer)
        {
            _initializers[initializer.Name] = model.ToTorch(initializer).DetachFromDisposeScope();
        }

        for (var i = 0; i < _order.Count; i++)
        {
            foreach (var input in _order[i].Input)
            {
                _lastUse[input] = i;
            }
        }

        Outputs = model.Proto.Graph.Output.Select(o => o.Name).ToList();
        foreach (var output in Outputs)
        {
            _lastUse[output] = int.MaxValue;
        }
    }

    public IReadOnlyList<string> Outputs { get; }

    public Tensor Weight(string name) => _initializers[name];

    /// <summary>Replaces an initializer's value; the graph owns the new tensor (it leaves any dispose scope) and disposes the old one.</summary>
    public void SetWeight(string name, Tensor value)
    {
        _initializers[name].Dispose();
        _initializers[name] = value.DetachFromDisposeScope();
    }

    /// <summary>Runs the graph on <paramref name="inputs"/>; returns the graph outputs and any <paramref name="extra"/> values.</summary>
    public Dictionary<string, Tensor> Run(IReadOnlyDictionary<string, Tensor> inputs, IReadOnlyCollection<string>? extra = null)
    {
        var values = Begin(inputs);
        var keep = new HashSet<string>(Outputs.Concat(extra ?? []).Concat(inputs.Keys).Concat(_initializers.Keys), StringComparer.Ordinal);
        for (var i = 0; i < _order.Count; i++)
        {
            Step(values, i, keep);
        }

        return Outputs.Concat(extra ?? []).Distinct().ToDictionary(n => n, n => values[n], StringComparer.Ordinal);
    }

    /// <summary>The nodes in the order they run.</summary>
    public IReadOnlyList<NodeProto> Order => _order;

    /// <summary>The values a run starts from: the weights and <paramref name="inputs"/> (not owned: never disposed here).</summary>
    public Dictionary<string, Tensor> Begin(IReadOnlyDictionary<string, Tensor> inputs)
    {
        var values = new Dictionary<string, Tensor>(_initializers, StringComparer.Ordinal);
        foreach (var (name, value) in inputs)
        {
            values[name] = value;
        }

        return values;
    }

    /// <summary>
    /// Runs node <paramref name="index"/> of <see cref="Order"/> on <paramref name="values"/>, adding its outputs and
    /// disposing the inputs it read for the last time (unless in <paramref name="keep"/>: weights, inputs, outputs).
    /// </summary>
    public void Step(Dictionary<string, Tensor> values, int index, IReadOnlySet<string> keep)
    {
        var node = _order[index];
        var arguments = node.Input.Select(n => n.Length == 0 ? null : values.TryGetValue(n, out var v) ? v
            : throw new InvalidOperationException($"value '{n}' of node '{OnnxGraph.Describe(node)}' is not computed")).ToArray();
        Tensor[] results;
        try
        {
            results = TorchOps.Run(new OpCall(node, arguments, _opset));
        }
        catch (NotSupportedException e)
        {
            throw CompressException.Error(DiagnosticCodes.OperatorNotExecutable, e.Message, inner: e);
        }

        for (var j = 0; j < results.Length && j < node.Output.Count; j++)
        {
            if (node.Output[j].Length > 0)
            {
                values[node.Output[j]] = results[j];
            }
        }

        foreach (var input in node.Input.Distinct())
        {
            if (input.Length > 0 && _lastUse[input] == index && !keep.Contains(input) && values.Remove(input, out var done))
            {
                done.Dispose();
            }
        }
    }

    /// <summary>Names of the weights (never released by <see cref="Step"/>).</summary>
    public IEnumerable<string> WeightNames => _initializers.Keys;

    public void Dispose()
    {
        foreach (var tensor in _initializers.Values)
        {
            tensor.Dispose();
        }
    }
}
