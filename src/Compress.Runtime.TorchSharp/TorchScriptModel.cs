using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Runtime.TorchSharp;

/// <summary>
/// A TorchScript module compressed by Compress.Build, loaded with <c>torch.jit.load</c>, cast to the element type its
/// inputs are declared with (the artifact holds quantized weights as float16) and set to inference mode.
/// </summary>
public sealed class TorchScriptModel : IDisposable
{
    private readonly jit.ScriptModule<Tensor, Tensor> _module;

    private TorchScriptModel(jit.ScriptModule<Tensor, Tensor> module) => _module = module;

    /// <summary>Loads the archive at <paramref name="path"/> and casts its parameters and buffers to <paramref name="type"/>.</summary>
    public static TorchScriptModel Load(string path, ScalarType type = ScalarType.Float32)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"TorchScript model not found: {path}", path);
        }

        NativeTorch.EnsureLoaded();
        var module = jit.load<Tensor, Tensor>(path);
        module.to(type);
        module.eval();
        return new TorchScriptModel(module);
    }

    /// <summary>Runs <c>forward</c> without recording gradients.</summary>
    public Tensor Forward(Tensor input)
    {
        using var _ = no_grad();
        return _module.call(input);
    }

    /// <summary>The scripted module itself (for fine-tuning or inspection).</summary>
    public jit.ScriptModule<Tensor, Tensor> Module => _module;

    /// <inheritdoc />
    public void Dispose() => _module.Dispose();
}
