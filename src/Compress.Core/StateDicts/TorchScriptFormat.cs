using Compress.Core.Evaluation;
using Compress.Core.Formats;
using Compress.Core.Passes.Finetune;
using Compress.Core.Passes.Pruning;
using Compress.Core.Passes.Quantization;
using Compress.Core.Reports;
using Compress.Core.Torch;
using Compress.Spec;
using Compress.Spec.Methods;
using static TorchSharp.torch;

namespace Compress.Core.StateDicts;

/// <summary>
/// A TorchScript archive in a compression run (<see cref="TorchScriptCompressor"/> describes what is offered): the
/// scripted module loaded twice (original and working copy), its weights pruned or put on grids in place. A spec step
/// the format does not offer is refused when it is opened (<see cref="TorchFormats.Refuse"/>).
/// </summary>
internal sealed class TorchScriptFormat : IRunnableFormat
{
    private readonly string _path;
    private readonly jit.ScriptModule<Tensor, Tensor> _original;
    private readonly jit.ScriptModule<Tensor, Tensor> _module;
    private readonly Dictionary<string, TorchSharp.Modules.Parameter> _parameters;
    private readonly Dictionary<string, Tensor> _originals;
    private readonly Dictionary<string, int> _bits = new(StringComparer.Ordinal);
    private readonly Dictionary<string, TorchScriptGrid> _grids = new(StringComparer.Ordinal);
    private readonly HashSet<string> _pruned = new(StringComparer.Ordinal);
    private readonly List<string> _notes = [];
    private DistillationData? _distillation;
    private readonly CompressionSpec _spec;
    private bool _halfStorage;

    public TorchScriptFormat(string path, CompressionSpec spec)
    {
        TorchRuntime.EnsureLoaded();
        TorchFormats.Refuse(spec, ModelFormat.TorchScript, "TorchScript", constraints: true);
        _path = path;
        _spec = spec;
        _original = TorchScriptCompressor.Load(path);
        _module = TorchScriptCompressor.Load(path);
        _original.eval(); // both run in eval mode throughout (nothing here trains them in train mode)
        _module.eval();
        _parameters = _module.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        _originals = _parameters.ToDictionary(p => p.Key, p => p.Value.detach().clone().DetachFromDisposeScope());
        SourceBytes = new FileInfo(path).Length;
        SourceParameters = _parameters.Values.Sum(p => p.numel());
    }

    public long SourceBytes { get; }

    public long SourceParameters { get; }

    public IReadOnlyList<string> Notes => _halfStorage
        ? [.. _notes, "TorchScript weights stored as float16 (exact for the quantization grids): load with torch.jit.load, then module.to(float32) — the generated wrapper does"]
        : _notes;

    public void Apply(SpecStep step, Action<string> progress)
    {
        if (step is FinetuneStep first)
        {
            _distillation = DistillationData.Reuse(_distillation, first, () => ModuleDistiller.Data(first, _spec, _original.call, progress)); // outside the step's scope
        }

        using var scope = NewDisposeScope();
        var names = _parameters.Where(p => p.Value.dim() >= 2 && Passes.WeightSelection.NameMatches(p.Key, step)).Select(p => p.Key).ToList();
        switch (step)
        {
            case PruneStep prune:
                var current = names.Select(n => _parameters[n].detach().clone()).ToList();
                TorchScriptGradients Gradients(int? count)
                {
                    var (x, labels) = TorchScriptCompressor.Samples(_spec.Calibration!.Path, _spec.Calibration.Labels, count, _spec.File);
                    return new TorchScriptGradients(_module, _parameters, names, x, labels is null ? null : tensor(labels));
                }

                var pruned = TorchScriptCompressor.Pruners[MethodCatalog.Of(prune).Name](new TorchScriptPruning(
                    prune, current, names, (scores, sparsity) => SparsityBudget.Masks(scores, sparsity, prune), Gradients, _spec.Calibration, progress));
                using (no_grad())
                {
                    for (var i = 0; i < names.Count; i++)
                    {
                        _parameters[names[i]].copy_(pruned[i]);
                    }
                }

                _pruned.UnionWith(names);
                progress($"prune/{prune.Method}: {names.Count} weights of {Path.GetFileName(_path)}");
                break;
            case QuantizeStep quantize:
                using (no_grad())
                {
                    foreach (var name in names)
                    {
                        var p = _parameters[name];
                        var grid = quantize.Weights switch
                        {
                            "int8" => new TorchScriptGrid(8, 0, TorchScriptCompressor.PowerOfTwoScales(p, 8, 0).DetachFromDisposeScope()),
                            "int4" => new TorchScriptGrid(4, quantize.BlockSize, TorchScriptCompressor.PowerOfTwoScales(p, 4, quantize.BlockSize).DetachFromDisposeScope()),
                            _ => new TorchScriptGrid(16, 0, null),
                        };
                        p.copy_(grid.Round(p));
                        _grids.Remove(name, out var replaced);
                        replaced?.Scales?.Dispose();
                        _grids[name] = grid;
                        _bits[name] = grid.Bits;
                    }
                }

                _halfStorage = true;
                progress($"quantize/{quantize.Weights}: {names.Count} weights of {Path.GetFileName(_path)}");
                break;
            case FinetuneStep finetune:
                _notes.Add(ModuleDistiller.Apply(finetune, _spec, _distillation!, _module, _module.call, _parameters, names, _pruned,
                    _grids.ToDictionary(g => g.Key, g => (Func<Tensor, Tensor>)g.Value.Round), progress));
                break;
        }
    }

    public string Fingerprint()
    {
        using var scope = NewDisposeScope();
        return string.Join(";", _parameters.Where(p => p.Value.dim() >= 2).Select(p => $"{p.Key}:{_bits.GetValueOrDefault(p.Key, 32)}:{p.Value.eq(0).sum().item<long>()}:{p.Value.ne(_originals[p.Key]).any().item<bool>()}"));
    }

    public string NothingChangedHint(SpecStep step) =>
        $"none of the module's weights (parameters of rank ≥ 2) matches its include/exclude globs";

    public IReadOnlyList<LayerFigures> Layers()
    {
        using var scope = NewDisposeScope();
        return _parameters.Where(p => p.Value.dim() >= 2 && (_bits.ContainsKey(p.Key) || p.Value.eq(0).any().item<bool>())).Select(p =>
        {
            var (name, value) = (p.Key, p.Value);
            var zeros = value.eq(0).sum().item<long>();
            return new LayerFigures(name, name, "torchscript", value.numel(), zeros / (double)value.numel(), _bits.GetValueOrDefault(name, 32),
                _bits.TryGetValue(name, out var b) ? (b == 16 ? "fp16" : $"int{b} power-of-two grid, stored float16") : "float32",
                WeightQuantization.RelativeError(_originals[name], value.detach()));
        }).ToList();
    }

    public ComparisonMetrics Compare(DataSource data, CompressionSpec spec, Action<string> progress) =>
        TorchScriptCompressor.Compare(_original.call, _module.call, data, spec);

    /// <summary>Nothing to finish: the weights were changed in place, and float16 storage is chosen when saving.</summary>
    public void Finish(string outputPath, Action<string> progress)
    {
    }

    public long Save(string outputPath)
    {
        TorchScriptCompressor.Save(_module, outputPath, _halfStorage, SourceBytes);
        return new FileInfo(outputPath).Length;
    }

    public void Dispose()
    {
        foreach (var tensor in _originals.Values.Concat(_grids.Values.Select(g => g.Scales).OfType<Tensor>()))
        {
            tensor.Dispose();
        }

        _distillation?.Dispose();

        _module.Dispose();
        _original.Dispose();
    }
}

/// <summary>
/// A weight's grid in a TorchScript module, as the quantize step left it: int8/int4 power-of-two scales per row (int4: per
/// row and block), or float16 (<see cref="Bits"/> 16, no scales).
/// </summary>
internal sealed record TorchScriptGrid(int Bits, int Block, Tensor? Scales)
{
    /// <summary><paramref name="w"/> on this grid (values, not codes).</summary>
    public Tensor Round(Tensor w) => Scales is null
        ? w.to_type(ScalarType.Float16).to_type(ScalarType.Float32)
        : TorchScriptCompressor.OnPowerOfTwoGrid(w, Scales, Bits, Block);
}
