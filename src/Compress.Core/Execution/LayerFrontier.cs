using Compress.Core.Calibration;
using Compress.Core.Diagnostics;
using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Torch;
using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Compress.Core.Execution;

/// <summary>
/// The single sequential pass of the layer-wise methods (algorithms.md §4): the calibration samples flow through the
/// model once, in the TorchSharp executor, node by node. When the frontier reaches a weighted layer, its input over all
/// samples is there to form the layer's Hessian; the method compresses the layer and hands back the weight as it now
/// computes (pruned, or dequantized from its grid), and the frontier moves on with it — so every layer sees the
/// earlier ones compressed, as before, but the model runs once instead of once per layer, and no ONNX Runtime
/// session is made per layer. Only the live activations are held. The executor runs a snapshot of the model taken
/// when the pass starts, so graph edits the pass makes (MatMulNBits, Q/DQ nodes) do not disturb it.
/// </summary>
public sealed class LayerFrontier : IDisposable
{
    private readonly TorchGraph _graph;
    private readonly Dictionary<string, Tensor> _values;
    private readonly Dictionary<string, Tensor> _inputs;
    private readonly HashSet<string> _keep;
    private readonly Dictionary<string, int> _position = new(StringComparer.Ordinal);
    private int _next;

    /// <summary>All samples run at once: their inputs may take this much (activations are tens of times more).</summary>
    private const long MaxInputBytes = 64L << 20;

    /// <summary>Why the frontier stopped part-way (an operator refused at run time), or null.</summary>
    public string? Failure { get; private set; }

    private LayerFrontier(TorchGraph graph, Dictionary<string, Tensor> inputs)
    {
        _graph = graph;
        _inputs = inputs;
        _values = graph.Begin(inputs);
        _keep = new HashSet<string>(graph.WeightNames.Concat(inputs.Keys), StringComparer.Ordinal);
        for (var i = 0; i < graph.Order.Count; i++)
        {
            foreach (var output in graph.Order[i].Output.Where(o => o.Length > 0))
            {
                _position[output] = i;
            }
        }
    }

    /// <summary>
    /// A frontier over <paramref name="data"/> for <paramref name="model"/> as it is now, or null (with the reason in
    /// <paramref name="why"/>) when the executor cannot run it — an operator it lacks, weights in external data — and
    /// the caller falls back to ONNX Runtime, one run per layer.
    /// </summary>
    public static LayerFrontier? TryCreate(OnnxModel model, CalibrationSet data, out string? why)
    {
        var inputBytes = data.Inputs.Values.Sum(a => a.Length * Onnx.OnnxElementTypes.BitWidth(a.ElementType) / 8);
        var fixedBatch = model.Proto.Graph.Input.Where(i => data.Inputs.ContainsKey(i.Name))
            .Any(i => i.Type?.TensorType?.Shape?.Dim is { Count: > 0 } d && d[0].ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue);
        why = model.ExternalData.Count > 0 ? "the model keeps weights in external data"
            : data.Constants.Count > 0 ? "inputs fed whole with every sample run one sample at a time"
            : fixedBatch ? "the model fixes its batch size"
            : inputBytes > MaxInputBytes ? $"{inputBytes >> 20} MB of calibration inputs would be held at once (at most {MaxInputBytes >> 20} MB)"
            : null;
        if (why is not null)
        {
            return null;
        }

        TorchRuntime.EnsureLoaded();
        TorchGraph graph;
        try
        {
            graph = new TorchGraph(new OnnxModel(model.Proto.Clone()));
        }
        catch (CompressException e) when (e.Diagnostic.Code == DiagnosticCodes.OperatorNotExecutable)
        {
            why = e.Diagnostic.Message;
            return null;
        }

        var inputs = data.Inputs.Concat(data.Constants).ToDictionary(p => p.Key, p =>
        {
            var type = OnnxTorchConversion.ScalarTypeOf(p.Value.ElementType) ?? throw new NotSupportedException($"input element type {p.Value.ElementType}");
            var tensor = empty(p.Value.Shape, type);
            p.Value.Data.AsSpan().CopyTo(tensor.bytes);
            return tensor.DetachFromDisposeScope();
        }, StringComparer.Ordinal);
        return new LayerFrontier(graph, inputs);
    }

    /// <summary>
    /// The input of <paramref name="node"/> over all samples, running the graph up to it; null when the frontier has
    /// passed it already or does not know it (the caller then takes the input from ONNX Runtime).
    /// </summary>
    public Tensor? InputOf(NodeProto node)
    {
        if (Failure is not null || node.Output.Count == 0 || !_position.TryGetValue(node.Output[0], out var index) || index < _next)
        {
            return null;
        }

        try
        {
            Advance(index);
        }
        catch (Exception e) when (e is CompressException or ExternalException or InvalidOperationException or ArgumentException)
        {
            // An operator refused at run time (an attribute or mode the executor lacks): the remaining layers take
            // their inputs from ONNX Runtime, as a model the executor cannot run at all does.
            Failure = e is CompressException c ? c.Diagnostic.Message : e.Message.Split('\n')[0];
            return null;
        }

        return _values.TryGetValue(node.Input[0], out var x) ? x : null;
    }

    private void Advance(int index)
    {
        while (_next < index)
        {
            // The step's temporaries go with this scope; its outputs live on in the frontier, outside any caller's scope.
            using var scope = NewDisposeScope();
            var step = _graph.Order[_next];
            _graph.Step(_values, _next++, _keep);
            foreach (var output in step.Output.Where(o => o.Length > 0))
            {
                if (_values.TryGetValue(output, out var value))
                {
                    value.DetachFromDisposeScope();
                }
            }
        }
    }

    /// <summary>The weight as the compressed layer now computes with it; later layers see it.</summary>
    public void SetWeight(string name, Tensor value)
    {
        _graph.SetWeight(name, value.to_type(ScalarType.Float32).contiguous().clone());
        _values[name] = _graph.Weight(name);
    }

    public void Dispose()
    {
        foreach (var (name, value) in _values)
        {
            if (!_keep.Contains(name))
            {
                value.Dispose();
            }
        }

        foreach (var input in _inputs.Values)
        {
            input.Dispose();
        }

        _graph.Dispose();
    }
}
