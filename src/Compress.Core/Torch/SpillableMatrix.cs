using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Torch;

/// <summary>
/// A float64 tensor that can be put aside in a temporary file (deleted on close) while larger working matrices need the
/// memory, and is read back, bit for bit, when next used. A 640-channel 3×3 Conv's input Hessians are 265 MB each: the
/// channel pruner's E[z zᵀ] and E[z zₒᵀ] wait on disk while the OBS order holds the inverse. Matrices smaller than
/// <paramref name="minBytes"/> stay in memory: a model of ordinary widths writes no temporary files.
/// </summary>
internal sealed class SpillableMatrix(Tensor value, long minBytes = SpillableMatrix.SetAsideBytes) : IDisposable
{
    /// <summary>The smallest matrix written aside by default (64 MB: a 2,900² float64 matrix, a 320-channel 3×3 consumer's).</summary>
    public const long SetAsideBytes = 64L << 20;

    private readonly long[] _shape = value.shape;
    private Tensor? _value = value;
    private FileStream? _file;

    /// <summary>The tensor, read back from the file if it was put aside (the read-back copy belongs to this object).</summary>
    public Tensor Value
    {
        get
        {
            if (_value is null)
            {
                var value = empty(_shape, ScalarType.Float64).DetachFromDisposeScope();
                _file!.Position = 0;
                _file.ReadExactly(value.bytes);
                _file.Dispose();
                _file = null;
                _value = value;
            }

            return _value;
        }
    }

    /// <summary>Writes the tensor to a temporary file and frees it; one under the threshold, or too large for a single span, stays in memory.</summary>
    public void SetAside()
    {
        if (_value is null || _value.numel() * sizeof(double) < minBytes || _value.numel() * sizeof(double) > int.MaxValue)
        {
            return;
        }

        var path = Path.Combine(Path.GetTempPath(), Path.GetRandomFileName());
        _file = new FileStream(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 20, FileOptions.DeleteOnClose);
        using (var contiguous = _value.contiguous()) // a handle of its own: disposed here, so nothing else holds the storage
        {
            _file.Write(contiguous.bytes);
        }

        _file.Flush();
        _value.Dispose();
        _value = null;
    }

    public void Dispose()
    {
        _value?.Dispose();
        _file?.Dispose();
    }
}
