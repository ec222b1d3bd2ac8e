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
/// session is made per layer. The samples run in chunks of at most <see cref="ChunkInputBytes"/> of inputs, each
/// node over every chunk in turn, so an operator's temporaries are a chunk's, and only the live activations are
/// held (an input is released after its last use). The executor runs a snapshot of the model taken when the pass
/// starts, so graph edits the pass makes (MatMulNBits, Q/DQ nodes) do not disturb it.
/// </summary>
public sealed class LayerFrontier : IDisposable
{
    private readonly TorchGraph _graph;
    private readonly List<Dictionary<string, Tensor>> _chunks;
    private readonly HashSet<string> _keep;
    private readonly Dictionary<string, int> _position = new(StringComparer.Ordinal);
    private int _next;

    /// <summary>A chunk's inputs take at most this much (its activations are tens of times more, and go one chunk at a time).</summary>
    private const long ChunkInputBytes = 16L << 20;

    /// <summary>
    /// All chunks' activations are live together: inputs beyond this fall back to ONNX Runtime per layer (which streams
    /// batches) rather than hold activations tens of times larger.
    /// </summary>
    private const long MaxInputBytes = 256L << 20;

    /// <summary>Why the frontier stopped part-way (an operator refused at run time), or null.</summary>
    public string? Failure { get; private set; }

    /// <summary>How many chunks the samples run in.</summary>
    public int Chunks => _chunks.Count;

    private LayerFrontier(TorchGraph graph, List<Dictionary<string, Tensor>> chunks)
    {
        _graph = graph;
        _chunks = chunks.Select(graph.Begin).ToList();
        _keep = new HashSet<string>(graph.WeightNames, StringComparer.Ordinal); // inputs go after their last use
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
        var inputBytes = data.Inputs.Values.Sum(a => a.Data.LongLength);
        var fixedBatch = model.Proto.Graph.Input.Where(i => data.Inputs.ContainsKey(i.Name))
            .Any(i => i.Type?.TensorType?.Shape?.Dim is { Count: > 0 } d && d[0].ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue);
        why = model.ExternalData.Count > 0 ? "the model keeps weights in external data"
            : data.Constants.Count > 0 ? "inputs fed whole with every sample run one sample at a time"
            : fixedBatch ? "the model fixes its batch size"
            : inputBytes > MaxInputBytes ? $"{inputBytes >> 20} MB of calibration inputs: their activations would be held at once (at most {MaxInputBytes >> 20} MB of inputs)"
            : null;
        if (why is not null)
        {
            return null;
        }

        TorchRuntime.EnsureLoaded();
        TorchGraph graph;
        try
        {
            graph = new TorchGraph(new OnnxModel(Snapshot(model.Proto)));
        }
        catch (CompressException e) when (e.Diagnostic.Code == DiagnosticCodes.OperatorNotExecutable)
        {
            why = e.Diagnostic.Message;
            return null;
        }

        var chunkCount = (int)Math.Clamp((inputBytes + ChunkInputBytes - 1) / ChunkInputBytes, 1, Math.Max(1, data.Count));
        var perChunk = (data.Count + chunkCount - 1) / chunkCount;
        var chunks = new List<Dictionary<string, Tensor>>();
        for (var start = 0; start < data.Count; start += perChunk)
        {
            var count = Math.Min(perChunk, data.Count - start);
            chunks.Add(data.Inputs.ToDictionary(p => p.Key, p => p.Value.ToTorch(start, count).DetachFromDisposeScope(), StringComparer.Ordinal));
        }

        return new LayerFrontier(graph, chunks);
    }

    /// <summary>
    /// The model's structure copied (nodes, inputs, outputs), its initializers shared: the executor reads them into
    /// tensors at once, so the pass's later graph edits do not reach it and no second copy of the weights is made.
    /// </summary>
    private static ModelProto Snapshot(ModelProto proto)
    {
        var graph = new GraphProto { Name = proto.Graph.Name };
        graph.Node.AddRange(proto.Graph.Node.Select(n => n.Clone()));
        graph.Input.AddRange(proto.Graph.Input.Select(v => v.Clone()));
        graph.Output.AddRange(proto.Graph.Output.Select(v => v.Clone()));
        graph.Initializer.AddRange(proto.Graph.Initializer);
        var copy = new ModelProto { IrVersion = proto.IrVersion, Graph = graph };
        copy.OpsetImport.AddRange(proto.OpsetImport.Select(o => o.Clone()));
        return copy;
    }

    /// <summary>
    /// The input of <paramref name="node"/> over all samples, one tensor per chunk, running the graph up to it; null
    /// when the frontier has passed it already or does not know it (the caller then takes the input from ONNX Runtime).
    /// </summary>
    public IReadOnlyList<Tensor>? InputOf(NodeProto node)
    {
        if (Failure is not null || node.Output.Count == 0 || !_position.TryGetValue(node.Output[0], out var index) || index < _next)
        {
            return null;
        }

        if (!Guarded(() => Advance(index)))
        {
            return null;
        }

        return _chunks.All(values => values.ContainsKey(node.Input[0])) ? _chunks.Select(values => values[node.Input[0]]).ToList() : null;
    }

    /// <summary>
    /// <paramref name="tensor"/> over all samples (one tensor per chunk, the caller's to dispose) as the graph computes
    /// it from where the frontier stands, without moving the frontier: the nodes up to its producer run on scratch
    /// values. Null when the frontier has passed it, does not know it, or cannot run a node on the way.
    /// </summary>
    public IReadOnlyList<Tensor>? Peek(string tensor)
    {
        if (Failure is not null || !_position.TryGetValue(tensor, out var index) || index < _next)
        {
            return null;
        }

        var results = new List<Tensor>();
        var ran = Guarded(() =>
        {
            foreach (var values in _chunks)
            {
                using var scope = NewDisposeScope(); // the scratch values go with it
                var scratch = new Dictionary<string, Tensor>(values, StringComparer.Ordinal);
                var keep = new HashSet<string>(values.Keys, StringComparer.Ordinal); // the frontier's own values are not the scratch's to free
                for (var i = _next; i <= index; i++)
                {
                    _graph.Step(scratch, i, keep);
                }

                results.Add(scratch[tensor].MoveToOuterDisposeScope());
            }
        });
        if (!ran)
        {
            results.ForEach(r => r.Dispose());
            return null;
        }

        return results;
    }

    /// <summary>Moves the frontier past the node that produces <paramref name="tensor"/> (nothing when it is there already).</summary>
    public void AdvancePast(string tensor)
    {
        if (Failure is null && _position.TryGetValue(tensor, out var index))
        {
            Guarded(() => Advance(index + 1));
        }
    }

    /// <summary>
    /// Runs <paramref name="run"/>; an operator refused at run time (an attribute or mode the executor lacks) stops the
    /// frontier (<see cref="Failure"/>), and the remaining layers take their inputs from ONNX Runtime, as a model the
    /// executor cannot run at all does.
    /// </summary>
    private bool Guarded(Action run)
    {
        try
        {
            run();
            return true;
        }
        catch (Exception e) when (e is CompressException or ExternalException or InvalidOperationException or ArgumentException)
        {
            Failure = e is CompressException c ? c.Diagnostic.Message : e.Message.Split('\n')[0];
            return false;
        }
    }

    private void Advance(int index)
    {
        for (; _next < index; _next++)
        {
            foreach (var values in _chunks)
            {
                Step(values, _next, _keep);
            }
        }
    }

    /// <summary>
    /// Runs node <paramref name="index"/> on one chunk's values: its temporaries go with this scope, its outputs live on
    /// in the frontier, outside any caller's scope.
    /// </summary>
    private void Step(Dictionary<string, Tensor> values, int index, IReadOnlySet<string> keep)
    {
        using var scope = NewDisposeScope();
        _graph.Step(values, index, keep);
        foreach (var output in _graph.Order[index].Output.Where(o => o.Length > 0))
        {
            if (values.TryGetValue(output, out var value))
            {
                value.DetachFromDisposeScope();
            }
        }
    }

    /// <summary>The weight as the compressed layer now computes with it; later layers see it.</summary>
    public void SetWeight(string name, Tensor value) => SetInitializer(name, value.to_type(ScalarType.Float32));

    /// <summary>Replaces an initializer's value as it is, element type included (a bias's int32 codes, say).</summary>
    public void SetInitializer(string name, Tensor value)
    {
        _graph.SetWeight(name, value.contiguous().clone());
        foreach (var values in _chunks)
        {
            values[name] = _graph.Weight(name);
        }

        RecomputeConstants(name);
    }

    /// <summary>
    /// Values the frontier already computed from constants alone that depend on <paramref name="initializer"/> (a
    /// DequantizeLinear of a bias's int32 codes, run early because it needs no activation) are computed again, so the
    /// layers still to come see the new value. Those already consumed are gone and need nothing.
    /// </summary>
    private void RecomputeConstants(string initializer)
    {
        var changed = new HashSet<string>(StringComparer.Ordinal) { initializer };
        for (var i = 0; i < _next; i++)
        {
            var node = _graph.Order[i];
            var inputs = node.Input.Where(n => n.Length > 0).ToList();
            if (!inputs.Any(changed.Contains) || !inputs.All(n => changed.Contains(n) || _keep.Contains(n))
                || !node.Output.Any(o => o.Length > 0 && _chunks[0].ContainsKey(o)))
            {
                continue;
            }

            var keep = _keep.Concat(changed).ToHashSet(StringComparer.Ordinal);
            foreach (var values in _chunks)
            {
                foreach (var output in node.Output.Where(o => o.Length > 0))
                {
                    if (values.Remove(output, out var old))
                    {
                        old.Dispose();
                    }
                }

                Step(values, i, keep);
            }

            changed.UnionWith(node.Output.Where(o => o.Length > 0));
        }
    }

    public void Dispose()
    {
        foreach (var values in _chunks)
        {
            foreach (var (name, value) in values)
            {
                if (!_keep.Contains(name))
                {
                    value.Dispose();
                }
            }
        }

        _graph.Dispose();
    }
}
