namespace Compress.Runtime;

/// <summary>An output of a model: its values in row-major order and its shape.</summary>
public sealed class ModelTensor<T>
{
    /// <summary>Wraps <paramref name="data"/> (not copied) with its <paramref name="shape"/>.</summary>
    public ModelTensor(T[] data, long[] shape)
    {
        Data = data;
        Shape = shape;
    }

    /// <summary>The values, row-major.</summary>
    public T[] Data { get; }

    /// <summary>The dimensions.</summary>
    public long[] Shape { get; }

    /// <summary>The values as a span.</summary>
    public ReadOnlySpan<T> Span => Data;

    /// <summary>Row <paramref name="index"/> along the first dimension (e.g. one sample of a batch).</summary>
    public ReadOnlySpan<T> Row(int index)
    {
        var width = Shape.Length == 0 || Shape[0] == 0 ? 0 : Data.Length / (int)Shape[0];
        return Data.AsSpan(index * width, width);
    }

    /// <inheritdoc />
    public override string ToString() => $"{typeof(T).Name}[{string.Join(", ", Shape)}]";
}
