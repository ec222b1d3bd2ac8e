using Compress.Core.Allocation;
using Compress.Core.Calibration;
using Compress.Core.Data;
using Compress.Core.Diagnostics;
using Compress.Core.Evaluation;
using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Passes;
using Compress.Spec;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Core.Tests.Allocation;

/// <summary>
/// The channel allocation (algorithms.md §18) on a small graph — x → convA (16) → relu → convB (16) → relu → convC (4,
/// the graph output) — whose convA writes every filter twice, so half its channels go at no cost while half of
/// convB's cost a lot: the choices and their errors, the exact multiply-adds of a cut, and both solvers picking the
/// cheaper-error cut under a budget on multiply-adds or on an injected timer.
/// </summary>
public sealed class ChannelAllocationTests
{
    private const int Samples = 64;

    /// <summary>Multiply-adds per pixel (8×8 of them): convA 3·9 per output channel, convB 9 per pair of channels, convC 1 per pair.</summary>
    private static long Macs(long a, long b) => 64 * (27 * a + 9 * a * b + 4 * b);

    [Fact]
    public void Choices_are_the_pruners_counts_with_errors_measured_at_the_output()
    {
        var (allocation, _) = Measure();
        Assert.Equal(["convA", "convB"], allocation.Groups.Select(g => g.Name));
        // Whole blocks of 8, then powers of two below one block (ChannelPruner.Removable).
        Assert.All(allocation.Groups, g => Assert.Equal([16L, 8, 4, 2, 1], g.Kept));
        var (a, b) = (allocation.Groups[0], allocation.Groups[1]);
        Assert.Equal(0, a.Errors[0]);
        Assert.Equal(0, b.Errors[0]);
        // At the output: the duplicated filters go almost free after the refit (what remains is the damping ridge); convB's distinct channels do not.
        Assert.True(b.Errors[1] > 0.01, $"convB 16→8: {b.Errors[1]}");
        Assert.True(a.Errors[1] < 0.2 * b.Errors[1], $"convA 16→8: {a.Errors[1]} vs convB {b.Errors[1]}");
    }

    [Fact]
    public void A_cut_counts_its_exact_multiply_adds()
    {
        var (allocation, data) = Measure();
        Assert.Equal(Macs(16, 16), FlopCount.MultiplyAdds(allocation.Cut([16, 16]), data));
        Assert.Equal(Macs(8, 16), FlopCount.MultiplyAdds(allocation.Cut([8, 16]), data));
        Assert.Equal(Macs(16, 8), FlopCount.MultiplyAdds(allocation.Cut([16, 8]), data));
        Assert.Equal([8L, 16, 3, 3], allocation.Cut([16, 8]).Graph.GetInitializer("wb")!.Dims);
    }

    [Theory]
    [InlineData("dp")]
    [InlineData("anneal")]
    public void Under_a_multiply_add_budget_the_solver_cuts_the_group_that_costs_less_error(string solver)
    {
        var (allocation, data) = Measure();
        // 0.6 of the source: either group alone fits (convA 16→8: 0.51, convB 16→8: 0.58), both cut is far below.
        var solution = allocation.Solve(ChannelCost.Macs, 0.6, solver, m => FlopCount.MultiplyAdds(m, data), _ => { });
        Assert.Equal([8L, 16], solution.Kept);
        Assert.Equal(Macs(8, 16), solution.Cost);
        Assert.Equal(Macs(16, 16), solution.SourceCost);
        Assert.True(solution.Cost <= solution.Budget);
        Assert.Equal(allocation.Groups[0].Errors[1], solution.Objective, 12);
    }

    [Theory]
    [InlineData("dp")]
    [InlineData("anneal")]
    public void Under_a_latency_budget_the_choice_follows_the_timers_table(string solver)
    {
        var (allocation, _) = Measure();
        // A made-up timer in which only convB's channels take time: 0.85 of the source needs convB cut.
        var calls = 0;
        double Timer(OnnxModel m)
        {
            calls++;
            return 1 + 0.01 * m.Graph.GetInitializer("wa")!.Dims[0] + 0.05 * m.Graph.GetInitializer("wb")!.Dims[0];
        }

        var solution = allocation.Solve(ChannelCost.Latency, 0.85, solver, Timer, _ => { });
        Assert.Equal(8, solution.Kept[1]);
        Assert.True(solution.Cost <= 0.85 * 1.96 + 1e-12, $"{solution.Cost} ms");
        Assert.Equal(allocation.Table.Count, calls); // every assignment timed once
        var again = allocation.Solve(ChannelCost.Latency, 0.85, solver, Timer, _ => { });
        Assert.Equal(solution.Kept, again.Kept);
        Assert.Equal(allocation.Table.Count, calls); // the table is reused: the same answer without timing again
    }

    [Fact]
    public void A_budget_below_every_groups_fewest_channels_is_refused()
    {
        var (allocation, data) = Measure();
        // One channel a group is the fewest: 2,560 multiply-adds, 1.4% of the source's 179,200.
        var e = Assert.Throws<CompressException>(() => allocation.Solve(ChannelCost.Macs, 0.01, "dp", m => FlopCount.MultiplyAdds(m, data), _ => { }));
        Assert.Equal(DiagnosticCodes.BudgetUnreachable, e.Diagnostic.Code);
        Assert.Contains($"{Macs(1, 1):N0} multiply-adds", e.Diagnostic.Message, StringComparison.Ordinal);
    }

    private static (ChannelAllocation Allocation, CalibrationSet Data) Measure()
    {
        var random = new Random(5);
        var half = Values(random, 8 * 3 * 9);
        var halfBias = Values(random, 8);
        var model = new GraphBuilder("duplicated")
            .Input("x", DataType.Float, "N", 3, 8, 8)
            .Initializer("wa", [.. half, .. half], 16, 3, 3, 3).Initializer("ba", [.. halfBias, .. halfBias], 16)
            .Initializer("wb", Values(random, 16 * 16 * 9), 16, 16, 3, 3).Initializer("bb", Values(random, 16), 16)
            .Initializer("wc", Values(random, 4 * 16), 4, 16, 1, 1)
            .Node("Conv", ["x", "wa", "ba"], ["a0"], "convA", "", Pads(1))
            .Node("Relu", ["a0"], ["a"], "reluA")
            .Node("Conv", ["a", "wb", "bb"], ["b0"], "convB", "", Pads(1))
            .Node("Relu", ["b0"], ["b"], "reluB")
            .Node("Conv", ["b", "wc"], ["y"], "convC")
            .Output("y", DataType.Float, "N", 4, 8, 8)
            .Build();
        var prune = new PruneStep { Method = "obs", Channel = true, AllocatedSparsity = true };
        prune.OpTypes.AddRange(["Conv", "Gemm", "MatMul"]);
        var spec = new CompressionSpec();
        spec.Steps.Add(prune);
        long[] shape = [Samples, 3, 8, 8];
        var values = Values(new Random(6), Samples * 3 * 64);
        var data = CalibrationSet.Synthesized(new Dictionary<string, NpyArray> { ["x"] = NpyArray.Create("x", values, shape) }, Samples, "seeded uniform inputs");
        var context = new CompressionContext(model, spec, _ => data);
        return (ChannelAllocation.Measure(context, prune, "spec.json", 1, 1), data);
    }

    private static AttributeProto Pads(long p) => OnnxAttribute.Ints("pads", p, p, p, p);

    private static float[] Values(Random random, int count) => Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
}
