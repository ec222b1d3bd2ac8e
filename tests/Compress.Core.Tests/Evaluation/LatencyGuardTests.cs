using Compress.Core.Evaluation;
using Compress.Core.Onnx;
using Compress.Core.Tests.TestSupport;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Core.Tests.Evaluation;

/// <summary>
/// The latency guard's decision on an injected timer (no timing in a test): each region costs what a table says in
/// its quantized and its float form, and the guard must keep exactly the faster form where it matters.
/// </summary>
public sealed class LatencyGuardTests
{
    private static readonly Dictionary<string, (double Quantized, double Float)> Costs = new()
    {
        ["conv_a"] = (3, 1),   // int8 slower: run float
        ["conv_b"] = (1, 2),   // int8 faster: keep
        ["conv_c"] = (1, 1.01), // the same within noise: keep
    };

    private static double Time(IReadOnlySet<string> floats) => 10 + Costs.Sum(c => floats.Contains(c.Key) ? c.Value.Float : c.Value.Quantized);

    [Fact]
    public void A_slower_quantized_region_runs_float_and_the_faster_ones_stay_int8()
    {
        var choice = LatencyGuard.Choose(Costs.Keys.ToList(), Time, source: 12, maxRatio: 1.0);
        Assert.Equal(["conv_a"], choice.FloatRegions);
        Assert.Equal(13, choice.Milliseconds);
        Assert.Contains("1 of 3 quantized regions run float", choice.Note);
    }

    [Fact]
    public void A_model_within_the_ratio_is_timed_once_and_kept()
    {
        var calls = 0;
        var choice = LatencyGuard.Choose(Costs.Keys.ToList(), f => { calls++; return Time(f); }, source: 12, maxRatio: 1.3);
        Assert.Empty(choice.FloatRegions);
        Assert.Equal(1, calls);
    }

    [Fact]
    public void All_float_wins_when_the_regions_only_gain_together()
    {
        // Each region alone gains nothing (a Q→DQ pair between them stays), all float at once drops the pairs.
        var choice = LatencyGuard.Choose(["x", "y"], f => f.Count == 2 ? 8 : 15, source: 10, maxRatio: 1.0);
        Assert.Equal(["x", "y"], choice.FloatRegions.Order());
        Assert.Contains("all 2 quantized regions run float", choice.Note);
    }

    [Fact]
    public void A_float_region_reads_the_activation_before_its_pair_and_unread_pairs_go()
    {
        var random = new Random(1);
        var model = new GraphBuilder("qdq")
            .Input("x", DataType.Float, "N", 4)
            .Initializer("scale", new[] { 0.05f }).Initializer("zero", new byte[] { 128 })
            .Initializer("w", Enumerable.Range(0, 16).Select(_ => (float)random.NextDouble()).ToArray(), 4, 4)
            .Node("QuantizeLinear", ["x", "scale", "zero"], ["xq"], "q")
            .Node("DequantizeLinear", ["xq", "scale", "zero"], ["xd"], "dq")
            .Node("MatMul", ["xd", "w"], ["y"], "matmul")
            .Output("y", DataType.Float, "N", 4)
            .Build();
        Assert.Equal(["matmul"], QdqRegions.Find(model).Select(OnnxGraph.Describe));

        QdqRegions.Float(model, new HashSet<string> { "matmul" });
        Assert.Equal(["MatMul"], model.Graph.Nodes.Select(n => n.OpType));
        Assert.Equal("x", model.Graph.Nodes[0].Input[0]);
        Assert.Null(model.Graph.GetInitializer("scale"));
        using var session = new InferenceSession(model.Proto.ToByteArray());
        Assert.Single(session.OutputNames);
    }
}
