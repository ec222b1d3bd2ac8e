using Compress.Core.Passes.Quantization;
using Compress.Core.Passes.SecondOrder;
using Compress.Core.Torch;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Tests.SecondOrder;

/// <summary>
/// Layer-wise OBS on a synthetic layer with correlated inputs (where second-order information matters):
/// SparseGPT and GPTQ against their first-order counterparts on the layer's output error ‖ŴX − WX‖²/‖WX‖².
/// </summary>
public sealed class LayerObsTests : IDisposable
{
    private readonly DisposeScope _scope;
    private readonly Tensor _weight;
    private readonly Tensor _inputs;
    private readonly Tensor _hessian;

    public LayerObsTests()
    {
        TorchRuntime.EnsureLoaded();
        _scope = NewDisposeScope();
        var generator = new Generator(3);
        _weight = randn([48, 96], generator: generator);
        _inputs = randn([512, 96], generator: generator).mm(randn([96, 96], generator: generator)) + randn([512, 96], generator: generator) * 0.1;
        _hessian = _inputs.t().mm(_inputs).to_type(ScalarType.Float64) * (2.0 / 512);
    }

    [Fact]
    public void SparseGpt_prunes_exactly_and_reconstructs_better_than_magnitude()
    {
        var pruned = LayerObs.Run(_weight, _hessian, new ObsOptions { Sparsity = 0.5, BlockSize = 32 }).Weight;
        Assert.Equal(0.5, Sparsity(pruned), 2);
        var threshold = _weight.abs().flatten().kthvalue(_weight.numel() / 2, 0).values;
        var magnitude = where(_weight.abs() > threshold, _weight, 0f);
        Assert.True(Error(pruned) < 0.75 * Error(magnitude), $"SparseGPT {Error(pruned):E3} vs magnitude {Error(magnitude):E3}");
    }

    [Fact]
    public void Two_of_four_keeps_exactly_two_in_every_group_of_four_columns()
    {
        var pruned = LayerObs.Run(_weight, _hessian, new ObsOptions { N = 2, M = 4, BlockSize = 32 }).Weight;
        var perGroup = pruned.ne(0).reshape(48, 24, 4).sum(2);
        Assert.True(perGroup.eq(2).all().item<bool>(), "a group of four does not hold exactly two weights");
    }

    [Theory]
    [InlineData(false, true)]
    [InlineData(true, true)]
    [InlineData(false, false)]
    public void Gptq_codes_lie_on_the_grid_and_beat_round_to_nearest(bool actOrder, bool symmetric)
    {
        var grid = new IntegerGrid(4, symmetric);
        var (weight, codes) = LayerObs.Run(_weight, _hessian, new ObsOptions { Grid = grid, GroupSize = 32, ActOrder = actOrder });
        Assert.NotNull(codes);
        Assert.True(codes!.Codes.ge(0).all().item<bool>() && codes.Codes.le(15).all().item<bool>() && codes.Codes.eq(codes.Codes.round()).all().item<bool>());
        var scales = codes.Scales.repeat_interleave(32, 1);
        var zeros = codes.Zeros.repeat_interleave(32, 1);
        Assert.True(IntegerGrid.Dequantize(codes.Codes, scales, zeros).allclose(weight, rtol: 0, atol: 1e-6), "weights are not the dequantized codes");

        var groups = _weight.reshape(48, 3, 32);
        var (s, z) = grid.Fit(groups, 2);
        var rounded = IntegerGrid.Dequantize(grid.Codes(groups, s, z), s, z).reshape(48, 96);
        Assert.True(Error(weight) < 0.7 * Error(rounded), $"GPTQ {Error(weight):E3} vs round-to-nearest {Error(rounded):E3}");
    }

    [Fact]
    public void Zeros_left_by_pruning_stay_zero_through_gptq()
    {
        var pruned = LayerObs.Run(_weight, _hessian, new ObsOptions { Sparsity = 0.5 }).Weight;
        var (weight, codes) = LayerObs.Run(pruned, _hessian, new ObsOptions { Grid = new IntegerGrid(4, true), GroupSize = 32 });
        Assert.True(weight.masked_select(pruned.eq(0)).eq(0).all().item<bool>());
        Assert.True(codes!.Codes.masked_select(pruned.eq(0)).eq(8).all().item<bool>(), "a pruned weight's code is not the zero point");
    }

    private double Error(Tensor approximation)
    {
        var reference = _inputs.mm(_weight.t());
        return ((_inputs.mm(approximation.t()) - reference).square().sum() / reference.square().sum()).item<float>();
    }

    private static double Sparsity(Tensor w) => 1 - w.count_nonzero().item<long>() / (double)w.numel();

    public void Dispose() => _scope.Dispose();
}
