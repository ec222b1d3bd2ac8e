using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Passes.SecondOrder;

/// <summary>
/// The block-diagonal inverse empirical Fisher of one weight tensor (algorithms.md §3): its flattened weights cut
/// into blocks of c, each block's F = λI + (1/N) Σ g gᵀ inverted on its own. Gradients are added a few at a time.
/// With N ≥ c the block's Gram matrix is accumulated (memory c² per block) and F inverted by Cholesky; with N &lt; c
/// the gradients are kept (memory N·c per block) and F⁻¹ comes from the Woodbury identity,
/// F⁻¹ = (1/λ)(I − G (NλI + GᵀG)⁻¹ Gᵀ), the closed form of the one-gradient-at-a-time recursion. Either way the
/// cost is the smaller of O(N·c²) and O(N²·c) per block. Accumulation is float32, inversion float64.
/// </summary>
public sealed class FisherBlocks : IDisposable
{
    private readonly int _size;
    private readonly double _lambda;
    private readonly int _gradients;
    private readonly Tensor _accumulated;
    private int _added;

    public FisherBlocks(long length, int blockSize, double lambda, int gradients)
    {
        _size = blockSize;
        _lambda = lambda;
        _gradients = gradients;
        Blocks = (length + blockSize - 1) / blockSize;
        UsesWoodbury = gradients < blockSize;
        _accumulated = (UsesWoodbury ? zeros(Blocks, blockSize, gradients) : zeros(Blocks, blockSize, blockSize)).DetachFromDisposeScope();
    }

    public long Blocks { get; }

    public bool UsesWoodbury { get; }

    /// <summary>Adds gradients given as the columns of [length, k].</summary>
    public void Add(Tensor gradients)
    {
        using var scope = NewDisposeScope();
        var k = gradients.shape[1];
        var padded = nn.functional.pad(gradients.to_type(ScalarType.Float32), [0, 0, 0, Blocks * _size - gradients.shape[0]]).reshape(Blocks, _size, k);
        if (UsesWoodbury)
        {
            _accumulated.narrow(2, _added, k).copy_(padded);
        }
        else
        {
            _accumulated.add_(padded.bmm(padded.transpose(1, 2)));
        }

        _added += (int)k;
    }

    /// <summary>[blocks, c, c] float64 F⁻¹ over the gradients added (which must be the N announced).</summary>
    public Tensor Inverse()
    {
        if (_added != _gradients)
        {
            throw new InvalidOperationException($"{_added} gradients added, {_gradients} expected");
        }

        using var scope = NewDisposeScope();
        var identity = eye(_size, dtype: ScalarType.Float64);
        Tensor inverse;
        if (UsesWoodbury)
        {
            var g = _accumulated.to_type(ScalarType.Float64);
            var inner = g.transpose(1, 2).bmm(g) + eye(_gradients, dtype: ScalarType.Float64) * (_gradients * _lambda);
            inverse = (identity - g.bmm(cholesky_solve(g.transpose(1, 2), linalg.cholesky(inner)))) / _lambda;
        }
        else
        {
            var fisher = _accumulated.to_type(ScalarType.Float64) / _gradients + identity * _lambda;
            inverse = cholesky_inverse(linalg.cholesky(fisher));
        }

        return inverse.MoveToOuterDisposeScope();
    }

    public void Dispose() => _accumulated.Dispose();
}
