using Compress.Core.Diagnostics;
using Compress.Core.Evaluation;
using Compress.Core.Formats;
using Compress.Core.Passes.Finetune;
using Compress.Runtime.TorchSharp;
using Compress.Spec;
using static TorchSharp.torch;

namespace Compress.Core.StateDicts;

/// <summary>
/// A TorchSharp state dict with the app's module type named in the spec (<c>module</c>): compressed as
/// <see cref="StateDictFormat"/> does, and run in two instances of the module — the original weights and the working
/// copy, which holds every weight as the artifact will restore it (pruned, rounded onto its int8/int4 grid or to fp16).
/// So the result is compared with the original on the data, the constraints are checked, and <c>finetune</c> distills
/// through the module's own autograd (<see cref="ModuleDistiller"/>), each quantized weight rounded straight-through by
/// the encoding the artifact stores.
/// </summary>
internal sealed class ModuleStateDictFormat : StateDictFormat, IRunnableFormat
{
    private readonly CompressionSpec _spec;
    private readonly nn.Module<Tensor, Tensor> _original;
    private readonly nn.Module<Tensor, Tensor> _module;
    private readonly HashSet<string> _pruned = new(StringComparer.Ordinal);
    private readonly List<string> _notes = [];
    private DistillationData? _distillation;

    public ModuleStateDictFormat(string path, CompressionSpec spec)
        : base(path, spec, runnable: true)
    {
        var module = spec.Module!;
        _spec = spec;
        _original = Load(ModuleActivator.Create(module, spec.File), path, spec);
        try
        {
            // The working copy takes the original's tensors (same type, same arguments), not another read of the file.
            _module = ModuleActivator.Create(module, spec.File);
            using var _ = no_grad();
            var state = _module.state_dict();
            foreach (var (name, value) in _original.state_dict())
            {
                state[name].copy_(value);
            }
        }
        catch
        {
            _module?.Dispose();
            _original.Dispose();
            base.Dispose();
            throw;
        }

        _notes.Add($"TorchSharp state dict run in {module.TypeName}: restore it with the wrapper's LoadInto(module)");
    }

    public override IReadOnlyList<string> Notes => _notes;

    public override void Apply(SpecStep step, Action<string> progress)
    {
        if (step is not FinetuneStep finetune)
        {
            base.Apply(step, progress);
            if (step is PruneStep)
            {
                _pruned.UnionWith(Weights.Keys.Where(n => Passes.WeightSelection.NameMatches(n, step)));
            }

            return;
        }

        _distillation = Forward("computing the original's outputs to distill", () =>
            DistillationData.Reuse(_distillation, finetune, () => ModuleDistiller.Data(finetune, _spec, _original.call, progress))); // outside the step's scope
        using var scope = NewDisposeScope();
        Synchronise();
        var parameters = _module.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var names = parameters.Where(p => p.Value.dim() >= 2 && IsWeight(p.Key) && Passes.WeightSelection.NameMatches(p.Key, step)).Select(p => p.Key).ToList();
        var grids = names.Where(n => Format(n).Bits < 32).ToDictionary(n => n, n => (Func<Tensor, Tensor>)(w => StateDictCompressor.Rounded(w, Format(n))));
        _notes.Add(Forward("training", () => ModuleDistiller.Apply(finetune, _spec, _distillation, _module, _module.call, parameters, names, _pruned, grids, progress)));
        foreach (var name in ModuleDistiller.Trained(parameters, names))
        {
            Store(name, parameters[name].detach().clone().DetachFromDisposeScope()); // grid values where quantized: Encode stores them as they are
        }
    }

    public ComparisonMetrics Compare(DataSource data, CompressionSpec spec, Action<string> progress)
    {
        Synchronise();
        progress($"evaluate: the original and compressed {_spec.Module!.TypeName} on {Path.GetFileName(data.Path)}");
        _original.eval();
        _module.eval();
        return Forward($"comparing it on {Path.GetFileName(data.Path)}", () => TorchScriptCompressor.Compare(_original.call, _module.call, data, spec));
    }

    /// <summary>
    /// <paramref name="run"/>, which calls the app's forward pass: what it throws (its own exception, TorchSharp's on
    /// shapes that do not fit the data, a missing member of another TorchSharp) is CMP0086 at the spec's 'module'.
    /// </summary>
    private T Forward<T>(string what, Func<T> run)
    {
        try
        {
            return run();
        }
        catch (Exception e) when (e is not (CompressException or OutOfMemoryException))
        {
            var module = _spec.Module!;
            throw CompressException.Error(DiagnosticCodes.ModuleForwardFailed,
                $"{module.TypeName}'s forward pass failed while {what}: {e.GetType().Name}: {e.Message.Split('\n')[0].Trim()}", _spec.File, module.Line, module.Column, e);
        }
    }

    public override void Dispose()
    {
        base.Dispose();
        _distillation?.Dispose();
        _module.Dispose();
        _original.Dispose();
    }

    /// <summary>The working module's weights as the artifact will restore them.</summary>
    private void Synchronise()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var state = _module.state_dict();
        foreach (var (name, weight) in Weights)
        {
            state[name].copy_(StateDictCompressor.Rounded(weight, Format(name)));
        }
    }

    /// <summary>The state dict loaded into <paramref name="module"/>; one that does not fit is CMP0085 with every mismatch.</summary>
    private static nn.Module<Tensor, Tensor> Load(nn.Module<Tensor, Tensor> module, string path, CompressionSpec spec)
    {
        try
        {
            StateDictLoader.LoadInto(module, path);
            module.eval();
            return module;
        }
        catch (StateDictMismatchException e)
        {
            module.Dispose();
            throw CompressException.Error(DiagnosticCodes.ModuleStateDictMismatch,
                $"the state dict does not fit {spec.Module!.TypeName}: {string.Join("; ", e.Mismatches)}", path, inner: e);
        }
    }
}
