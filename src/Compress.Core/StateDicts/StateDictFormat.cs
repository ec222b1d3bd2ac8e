using System.Text.Json;
using Compress.Core.Diagnostics;
using Compress.Core.Formats;
using Compress.Core.Passes.Pruning;
using Compress.Core.Passes.Quantization;
using Compress.Core.Reports;
using Compress.Core.Torch;
using Compress.Runtime.StateDicts;
using Compress.Spec;
using Compress.Spec.Methods;
using static TorchSharp.torch;

namespace Compress.Core.StateDicts;

/// <summary>
/// A TorchSharp state dict in a compression run (<see cref="StateDictCompressor"/> describes what is offered): its
/// entries read once, the selected weights pruned in memory and given their bits, each encoded in its smallest stored
/// form when the layers are first asked for, and written as a <see cref="CompressedStateDict"/>. It has no graph, so it
/// cannot be run on data (it is no <see cref="IRunnableFormat"/>), and the spec's constraints are refused when it is opened —
/// unless the spec names the app's module type (<see cref="ModuleStateDictFormat"/>).
/// </summary>
internal class StateDictFormat : IModelFormat
{
    private readonly string _path;
    private readonly IReadOnlyList<StateDictTensor> _entries;
    private readonly HashSet<string> _weightNames;
    private readonly Dictionary<string, Tensor> _weights = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (int Bits, int BlockSize)> _bits = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Tensor> _others = new(StringComparer.Ordinal); // trained float entries that are no weights (biases)
    private (List<StateDictTensor> Written, List<LayerFigures> Layers)? _encoded;

    public StateDictFormat(string path, CompressionSpec spec)
        : this(path, spec, runnable: false)
    {
    }

    /// <param name="runnable">Whether the state dict runs in a module, so constraints and finetune apply.</param>
    protected StateDictFormat(string path, CompressionSpec spec, bool runnable)
    {
        TorchRuntime.EnsureLoaded();
        TorchFormats.Refuse(spec, ModelFormat.TorchSharp, "TorchSharp state-dict", constraints: runnable);
        _path = path;
        _entries = StateDictCompressor.ReadFile(path);
        _weightNames = _entries.Where(e => e.Type == StateDictElementType.Float32 && e.Shape.Length >= 2).Select(e => e.Name).ToHashSet(StringComparer.Ordinal);
        SourceBytes = new FileInfo(path).Length;
        SourceParameters = _entries.Sum(e => e.Count);
    }

    public long SourceBytes { get; }

    public long SourceParameters { get; }

    public virtual IReadOnlyList<string> Notes { get; } = ["TorchSharp state dict: restore it with the wrapper's LoadInto(module); accuracy is checked by your app, not here (name the module type in the spec's 'module' to check it here)"];

    /// <summary>The weights the steps changed (pruned, or given bits), by name: float32 values before rounding.</summary>
    protected IReadOnlyDictionary<string, Tensor> Weights => _weights;

    /// <summary>The bits (and int4 block) the quantize step gave <paramref name="name"/>; 32 where none.</summary>
    protected (int Bits, int BlockSize) Format(string name) => _bits.GetValueOrDefault(name, (32, 0));

    /// <summary>Whether <paramref name="name"/> is a weight the steps may compress: a float32 entry of rank ≥ 2.</summary>
    protected bool IsWeight(string name) => _weightNames.Contains(name);

    /// <summary>A trained value for entry <paramref name="name"/> (a float32 entry of the same shape); the state dict takes ownership.</summary>
    protected void Store(string name, Tensor value)
    {
        _encoded = null;
        var into = IsWeight(name) ? _weights : _others;
        if (into.Remove(name, out var replaced))
        {
            replaced.Dispose();
        }

        into[name] = value;
    }

    public virtual void Apply(SpecStep step, Action<string> progress)
    {
        _encoded = null;
        var selected = _entries.Where(e => IsWeight(e.Name) && Passes.WeightSelection.NameMatches(e.Name, step)).ToList();
        foreach (var entry in selected.Where(e => !_weights.ContainsKey(e.Name)))
        {
            _weights[entry.Name] = StateDictCompressor.ToTorch(entry).DetachFromDisposeScope();
        }

        switch (step)
        {
            case PruneStep prune:
                using (NewDisposeScope())
                {
                    var current = selected.Select(e => _weights[e.Name]).ToList();
                    var pruned = SparsityBudget.Apply(current, SparsityBudget.Masks(current.Select(SparsityBudget.ScaleFreeMagnitude).ToList(), prune.Sparsity, prune));
                    for (var i = 0; i < selected.Count; i++)
                    {
                        _weights[selected[i].Name].Dispose();
                        _weights[selected[i].Name] = pruned[i].DetachFromDisposeScope();
                    }
                }

                progress($"prune/{MagnitudeMethod.Name}: {selected.Count} weights of {Path.GetFileName(_path)}");
                break;
            case QuantizeStep quantize:
                foreach (var entry in selected)
                {
                    _bits[entry.Name] = quantize.Weights switch { "int8" => (8, 0), "int4" => (4, quantize.BlockSize), _ => (16, 0) };
                }

                progress($"quantize/{quantize.Weights}: {selected.Count} weights of {Path.GetFileName(_path)}");
                break;
        }
    }

    public string Fingerprint()
    {
        using var scope = NewDisposeScope();
        return string.Join(";", _weights.Concat(_others).Select(p => $"{p.Key}:{_bits.GetValueOrDefault(p.Key).Bits}:{p.Value.count_nonzero().item<long>()}:{p.Value.sum().item<float>():R}"));
    }

    public string NothingChangedHint(SpecStep step) =>
        "none of the state dict's float32 weights of rank ≥ 2 matches its include/exclude globs";

    public IReadOnlyList<LayerFigures> Layers() => Encoded().Layers;

    /// <summary>Nothing to finish: the weights are encoded when the layers are first asked for.</summary>
    public void Finish(string outputPath, Action<string> progress)
    {
    }

    public long Save(string outputPath)
    {
        var written = Encoded().Written;
        long expectedBytes;
        using (var measure = new ByteCounter())
        {
            StateDictFile.Write(measure, written);
            expectedBytes = measure.Length;
        }

        if (expectedBytes > SourceBytes)
        {
            throw CompressException.Error(DiagnosticCodes.ArtifactLarger,
                $"the compressed state dict would be {expectedBytes:N0} bytes, larger than its source ({SourceBytes:N0} bytes); nothing was written", outputPath);
        }

        StateDictFile.Write(outputPath, written);
        return new FileInfo(outputPath).Length;
    }

    /// <summary>Every entry as it will be written (weights in their smallest form, the metadata entry first) and the layers' figures.</summary>
    private (List<StateDictTensor> Written, List<LayerFigures> Layers) Encoded()
    {
        if (_encoded is { } done)
        {
            return done;
        }

        using var scope = NewDisposeScope();
        var written = new List<StateDictTensor>();
        var stored = new List<StoredTensor>();
        var layers = new List<LayerFigures>();
        foreach (var entry in _entries)
        {
            if (_others.TryGetValue(entry.Name, out var trained))
            {
                written.Add(StateDictCompressor.Entry(entry.Name, trained));
                stored.Add(new StoredTensor { Name = entry.Name, Shape = entry.Shape });
                continue;
            }

            if (!_weights.TryGetValue(entry.Name, out var weight))
            {
                written.Add(entry);
                stored.Add(new StoredTensor { Name = entry.Name, Shape = entry.Shape });
                continue;
            }

            var original = StateDictCompressor.ToTorch(entry);
            var (encoding, tensors, decoded) = StateDictCompressor.Encode(entry.Name, weight, _bits.GetValueOrDefault(entry.Name, (32, 0)));
            written.AddRange(tensors);
            stored.Add(new StoredTensor { Name = entry.Name, Encoding = encoding, Shape = entry.Shape, BlockSize = _bits.GetValueOrDefault(entry.Name).BlockSize });
            var sparsity = 1 - decoded.count_nonzero().item<long>() / (double)decoded.numel();
            layers.Add(new LayerFigures(entry.Name, entry.Name, "state-dict", entry.Count, sparsity,
                _bits.TryGetValue(entry.Name, out var f) ? f.Bits : 32, encoding, WeightQuantization.RelativeError(original, decoded)));
        }

        var metadata = JsonSerializer.SerializeToUtf8Bytes(new CompressedStateDictInfo { Tensors = stored }, CompressedStateDict.Json);
        written.Insert(0, new StateDictTensor(CompressedStateDict.MetadataName, StateDictElementType.Byte, [metadata.Length], metadata));
        _encoded = (written, layers);
        return (written, layers);
    }

    public virtual void Dispose()
    {
        foreach (var weight in _weights.Values.Concat(_others.Values))
        {
            weight.Dispose();
        }
    }
}
