using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace Compress.Runtime;

/// <summary>
/// The inputs of one run. Numeric and bool inputs are zero-copy: the caller's memory is pinned for the run and
/// ONNX Runtime reads it in place. Dispose after the run (the generated code does).
/// </summary>
public sealed class ModelInputs : IDisposable
{
    private readonly List<string> _names = [];
    private readonly List<OrtValue> _values = [];
    private readonly List<MemoryHandle> _pins = [];

    /// <summary>Input names, in the order added.</summary>
    public IReadOnlyList<string> Names => _names;

    /// <summary>Input values, in the order of <see cref="Names"/>.</summary>
    public IReadOnlyList<OrtValue> Values => _values;

    /// <summary>A tensor over the caller's memory (no copy). <paramref name="shape"/> comes from <see cref="Shapes.Resolve"/>.</summary>
    public unsafe void Add<T>(string name, ReadOnlyMemory<T> data, long[] shape, TensorElementType type) where T : unmanaged
    {
        var pin = data.Pin();
        _pins.Add(pin);
        var value = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, type, shape, (IntPtr)pin.Pointer, (long)data.Length * Unsafe.SizeOf<T>());
        _names.Add(name);
        _values.Add(value);
    }

    /// <summary>A string tensor (strings are copied: ONNX Runtime keeps its own).</summary>
    public void AddStrings(string name, IReadOnlyList<string> data, long[] shape)
    {
        var value = OrtValue.CreateTensorWithEmptyStrings(OrtAllocator.DefaultInstance, shape);
        for (var i = 0; i < data.Count; i++)
        {
            value.StringTensorSetElementAt(data[i].AsSpan(), i);
        }

        _names.Add(name);
        _values.Add(value);
    }

    /// <summary>Releases the tensors and unpins the caller's memory.</summary>
    public void Dispose()
    {
        foreach (var value in _values)
        {
            value.Dispose();
        }

        foreach (var pin in _pins)
        {
            pin.Dispose();
        }

        _values.Clear();
        _pins.Clear();
    }
}

/// <summary>Reading outputs into <see cref="ModelTensor{T}"/>.</summary>
public static class ModelOutputs
{
    /// <summary>A numeric or bool output, copied out of ONNX Runtime's buffer.</summary>
    public static ModelTensor<T> Tensor<T>(OrtValue value) where T : unmanaged =>
        new(value.GetTensorDataAsSpan<T>().ToArray(), value.GetTensorTypeAndShape().Shape);

    /// <summary>A float16 output as <see cref="Half"/> (same bits as ONNX Runtime's Float16).</summary>
    public static ModelTensor<Half> HalfTensor(OrtValue value) =>
        new(MemoryMarshal.Cast<Float16, Half>(value.GetTensorDataAsSpan<Float16>()).ToArray(), value.GetTensorTypeAndShape().Shape);

    /// <summary>A string output.</summary>
    public static ModelTensor<string> StringTensor(OrtValue value) =>
        new(value.GetStringTensorAsArray(), value.GetTensorTypeAndShape().Shape);
}
