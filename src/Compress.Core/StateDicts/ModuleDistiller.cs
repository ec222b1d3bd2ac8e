using Compress.Core.Diagnostics;
using Compress.Core.Passes.Finetune;
using Compress.Spec;
using static TorchSharp.torch;

namespace Compress.Core.StateDicts;

/// <summary>
/// <c>finetune</c> (<c>distill</c>) of a TorchSharp module — a TorchScript archive, or the app's module with a state dict
/// loaded — through its own autograd (algorithms.md §19): the original module's outputs on the calibration (or
/// training) inputs distilled into the working copy by the loop every format shares (<see cref="DistillationLoop"/>,
/// <see cref="DistillationLoss"/>). The trained weights are the parameters of rank ≥ 2 matching the step's globs, with
/// the biases of the same modules (<c>x.weight</c>, <c>x.bias</c>). Each weight trains as a float shadow: before every
/// forward pass its value — shadow·mask, rounded onto its grid if the quantize step put it on one — is copied into the
/// module's parameter; the module's gradient with respect to that parameter is carried into the shadow through the same
/// function with a straight-through rounding. The values written back are grid values, and pruned weights (masks fixed)
/// stay zero. The module runs in eval mode (BatchNorm's running statistics, no dropout), so training is deterministic on CPU.
/// </summary>
internal static class ModuleDistiller
{
    /// <summary>Trains the working <paramref name="module"/> towards the original's outputs in <paramref name="data"/> (<see cref="Data"/>); returns the note.</summary>
    /// <param name="grids">Per quantized weight, its rounding onto its grid (values, not codes), the scales as the format holds them.</param>
    public static string Apply(FinetuneStep step, CompressionSpec spec, DistillationData data, nn.Module module, Func<Tensor, Tensor> call,
        IReadOnlyDictionary<string, TorchSharp.Modules.Parameter> parameters, IReadOnlyList<string> names, IReadOnlySet<string> pruned,
        IReadOnlyDictionary<string, Func<Tensor, Tensor>> grids, Action<string> progress)
    {
        var trained = Trained(parameters, names);
        if (names.Count == 0)
        {
            throw DistillationLoop.NothingToTrain(step, spec.File, "the module's parameters of rank ≥ 2");
        }

        var weights = trained.Select(n => Weight(n, parameters[n], pruned.Contains(n), grids.GetValueOrDefault(n))).ToList();
        var frozen = parameters.Where(p => !trained.Contains(p.Key) && p.Value.requires_grad).Select(p => p.Value).ToList();
        var leaves = trained.Select(n => (Tensor)parameters[n]).ToArray();
        module.eval();
        Tensor[] forwards = [];
        try
        {
            frozen.ForEach(p => p.requires_grad = false);
            return DistillationLoop.Train(step, spec.File, data, weights, new DistillationStudent(
                indices =>
                {
                    // Each weight's value once per step (its rounding refits grids): copied into the module, and kept for the backward pass.
                    forwards = weights.Select(w => w.Forward()).ToArray();
                    using (no_grad())
                    {
                        for (var i = 0; i < weights.Count; i++)
                        {
                            parameters[weights[i].Value].copy_(forwards[i]);
                        }
                    }

                    return call(data.Batch(indices)[Input]);
                },
                loss =>
                {
                    var gradients = autograd.grad([loss], leaves);
                    for (var i = 0; i < weights.Count; i++)
                    {
                        forwards[i].backward([gradients[i]]); // d loss / d shadow through the mask and the straight-through grid
                    }
                }), progress);
        }
        finally
        {
            frozen.ForEach(p => p.requires_grad = true);
            weights.ForEach(w => w.Dispose());
        }
    }

    private const string Input = "input";

    /// <summary>The parameters that train: <paramref name="names"/> (weights) and the biases of the same modules.</summary>
    public static List<string> Trained(IReadOnlyDictionary<string, TorchSharp.Modules.Parameter> parameters, IReadOnlyList<string> names) =>
        names.Concat(names.Where(n => n.EndsWith(".weight", StringComparison.Ordinal)).Select(n => n[..^".weight".Length] + ".bias")
            .Where(b => parameters.TryGetValue(b, out var bias) && bias.dim() == 1)).ToList();

    /// <summary>
    /// The original module's outputs on the training (or calibration) inputs, with the labels if the spec names them — made
    /// once per run (a gradual prune's stages share it), outside any dispose scope.
    /// </summary>
    /// <param name="original">The original module's forward pass (in eval mode).</param>
    public static DistillationData Data(FinetuneStep step, CompressionSpec spec, Func<Tensor, Tensor> original, Action<string> progress)
    {
        var source = spec.Training ?? spec.Calibration ?? throw new InvalidOperationException("the spec reader requires data for 'finetune'");
        var (x, labels) = TorchScriptCompressor.Samples(source.Path, source.Labels, source.Samples, spec.File);
        progress($"finetune: the original module's output on {x.shape[0]:N0} samples");
        Tensor teacher;
        using (var scope = NewDisposeScope())
        {
            teacher = TorchScriptCompressor.Outputs(original, x).MoveToOuterDisposeScope();
        }

        return DistillationData.FromTensors(Input, x, teacher, labels, "output", step, Path.GetFileName(source.Path));
    }

    /// <summary>A parameter as a float shadow: masked where pruned, rounded straight-through onto its grid where quantized.</summary>
    private static TrainableWeight Weight(string name, TorchSharp.Modules.Parameter parameter, bool pruned, Func<Tensor, Tensor>? grid)
    {
        var value = parameter.detach().clone();
        var mask = pruned ? value.ne(0).to_type(ScalarType.Float32) : null;
        Func<Tensor, Tensor> forward = grid is null ? w => w.alias() : w => w + (grid(w) - w).detach();
        return new TrainableWeight(name, name, value, mask, forward, trained =>
        {
            using var _ = no_grad();
            parameter.copy_(grid is null ? trained : grid(trained));
        });
    }
}
