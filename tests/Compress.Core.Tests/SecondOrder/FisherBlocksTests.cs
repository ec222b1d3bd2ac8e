using Compress.Core.Passes.SecondOrder;
using Compress.Core.Torch;
using static TorchSharp.torch;

namespace Compress.Core.Tests.SecondOrder;

/// <summary>Both ways of building the block inverse Fisher equal the explicit inverse of λI + (1/N) Σ g gᵀ per block.</summary>
public sealed class FisherBlocksTests
{
    [Theory]
    [InlineData(16, 40, false)] // N ≥ c: Gram matrix, Cholesky inverse
    [InlineData(64, 20, true)] // N < c: Woodbury identity
    public void Block_inverse_equals_the_explicit_inverse(int blockSize, int count, bool woodbury)
    {
        TorchRuntime.EnsureLoaded();
        using var scope = NewDisposeScope();
        const long length = 150;
        const double lambda = 1e-3;
        var gradients = randn([length, count], ScalarType.Float64, generator: new Generator(5)) * 0.1;
        using var blocks = new FisherBlocks(length, blockSize, lambda, count);
        Assert.Equal(woodbury, blocks.UsesWoodbury);
        blocks.Add(gradients.narrow(1, 0, 7));
        blocks.Add(gradients.narrow(1, 7, count - 7));
        var inverse = blocks.Inverse();

        var padded = nn.functional.pad(gradients, [0, 0, 0, blocks.Blocks * blockSize - length]).reshape(blocks.Blocks, blockSize, count);
        var fisher = padded.bmm(padded.transpose(1, 2)) / count + eye(blockSize, dtype: ScalarType.Float64) * lambda;
        var expected = linalg.inv(fisher);
        var relative = ((inverse - expected).abs().max() / expected.abs().max()).item<double>();
        Assert.True(relative < 1e-4, $"relative difference {relative:E2}");
    }
}
