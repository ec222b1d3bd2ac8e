using Compress.Core.Torch;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Tests.Torch;

/// <summary>A matrix put aside in a temporary file is freed, and comes back bit for bit.</summary>
public sealed class SpillableMatrixTests
{
    [Fact]
    public void A_matrix_set_aside_is_read_back_bit_for_bit()
    {
        TorchRuntime.EnsureLoaded();
        using var scope = NewDisposeScope();
        manual_seed(5);
        var original = randn(67, 67, ScalarType.Float64).mul(1e-3).exp(); // values with every mantissa bit in use
        var expected = original.clone();
        using var matrix = new SpillableMatrix(original, minBytes: 0);

        matrix.SetAside();

        Assert.True(original.IsInvalid, "the tensor is freed once set aside");
        var value = matrix.Value;
        Assert.Equal(expected.shape, value.shape);
        Assert.True(expected.bytes.SequenceEqual(value.bytes), "the same bits");
        Assert.Same(value, matrix.Value);
    }

    [Fact]
    public void A_matrix_under_the_threshold_stays_in_memory()
    {
        TorchRuntime.EnsureLoaded();
        using var scope = NewDisposeScope();
        var original = ones(67, 67, ScalarType.Float64);
        using var matrix = new SpillableMatrix(original);

        matrix.SetAside();

        Assert.False(original.IsInvalid, "a 36 KB matrix is not written aside");
        Assert.Same(original, matrix.Value);
    }
}
