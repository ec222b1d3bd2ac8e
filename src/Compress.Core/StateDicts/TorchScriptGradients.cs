using Compress.Core.Execution;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.StateDicts;

/// <summary>
/// Gradients of a TorchScript module's cross-entropy loss with respect to chosen parameters, on calibration samples
/// held as one tensor. Targets: the labels when given, else the module's own predictions before any change.
/// </summary>
internal sealed class TorchScriptGradients : IGradientModel
{
    private readonly jit.ScriptModule<Tensor, Tensor> _module;
    private readonly IReadOnlyDictionary<string, TorchSharp.Modules.Parameter> _parameters;
    private readonly IReadOnlyList<string> _names;
    private readonly Tensor _x;
    private readonly Tensor _targets;

    public TorchScriptGradients(jit.ScriptModule<Tensor, Tensor> module, IReadOnlyDictionary<string, TorchSharp.Modules.Parameter> parameters,
        IReadOnlyList<string> names, Tensor x, Tensor? labels)
    {
        _module = module;
        _parameters = parameters;
        _names = names;
        _x = x;
        module.eval();
        if (labels is not null)
        {
            _targets = labels;
            Source = "labels";
        }
        else
        {
            _targets = TorchScriptCompressor.Outputs(module.call, x).argmax(1);
            Source = "the model's own predictions";
        }
    }

    public int Count => (int)_x.shape[0];

    public string Source { get; }

    public Tensor[] Gradients(int start, int count)
    {
        using var scope = NewDisposeScope();
        var leaves = _names.Select(n => (Tensor)_parameters[n]).ToArray();
        var loss = nn.functional.cross_entropy(_module.call(_x.narrow(0, start, count)), _targets.narrow(0, start, count));
        return autograd.grad([loss], leaves).Select(g => g.detach().MoveToOuterDisposeScope()).ToArray();
    }

    public void SetWeight(string name, Tensor value)
    {
        using var _ = no_grad();
        _parameters[name].copy_(value);
    }
}
