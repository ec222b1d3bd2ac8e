using Compress.Core.Diagnostics;
using Compress.Core.Evaluation;
using Compress.Core.Onnx;
using Compress.Core.Reports;
using Compress.Core.Tests.TestSupport;
using Compress.Spec;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Core.Tests.Evaluation;

/// <summary>
/// The latency guard's decision on an injected timer (no timing in a test): each region costs what a table says in
/// each of its forms, and the guard must keep exactly the faster form where it matters.
/// </summary>
public sealed class LatencyGuardTests
{
    private static readonly Dictionary<string, (double Int8, double Float, double FloatWeights)> Costs = new()
    {
        ["conv_a"] = (3, 1, 1),      // int8 slower: run float; float weights gain nothing: keep them int8
        ["conv_b"] = (1, 2, 2),      // int8 faster: keep
        ["conv_c"] = (1, 1.01, 1.01), // the same within noise: keep
        ["fc_d"] = (3, 2.5, 1),      // the DequantizeLinear of its large weights costs: float weights
    };

    private static readonly HashSet<string> Weighted = ["conv_a", "conv_b", "conv_c", "fc_d"];

    private static double Cost(IReadOnlyDictionary<string, RegionForm> forms, string region) => forms.GetValueOrDefault(region) switch
    {
        RegionForm.Float => Costs[region].Float,
        RegionForm.FloatWeights => Costs[region].FloatWeights,
        _ => Costs[region].Int8,
    };

    private static LatencyGuard.Timing Time(IReadOnlyDictionary<string, RegionForm> forms)
    {
        var ms = 10 + Costs.Keys.Sum(r => Cost(forms, r));
        return new LatencyGuard.Timing(ms, 32 * ms);
    }

    [Fact]
    public void Each_region_keeps_its_faster_form()
    {
        var choice = LatencyGuard.Choose(Costs.Keys.ToList(), Weighted, Time, source: 15, maxRatio: 1.0);
        Assert.Equal(new Dictionary<string, RegionForm> { ["conv_a"] = RegionForm.Float, ["fc_d"] = RegionForm.FloatWeights }, choice.Forms);
        Assert.Equal(14, choice.Milliseconds);
        Assert.Contains("conv_a float, fc_d float (float weights); int8: conv_b, conv_c", choice.Note);
        Assert.Contains("float weights tried", choice.Note); // 16 ms keeping the size is over 1.0 × 15 ms
    }

    [Fact]
    public void A_form_is_timed_once()
    {
        var seen = new List<string>();
        LatencyGuard.Choose(Costs.Keys.ToList(), Weighted, f =>
        {
            seen.Add(string.Join(";", f.OrderBy(x => x.Key).Select(x => $"{x.Key}={x.Value}")));
            return Time(f);
        }, source: 15, maxRatio: 1.0);
        Assert.Equal(seen.Count, seen.Distinct().Count());
    }

    [Fact]
    public void Within_the_ratio_the_faster_forms_that_keep_the_size_are_kept_and_one_with_none_stays_int8()
    {
        // 16 ms with conv_a float is within 1.5 × 15 ms: fc_d's float weights (14 ms, a larger file) are not tried.
        var choice = LatencyGuard.Choose(Costs.Keys.ToList(), Weighted, Time, source: 15, maxRatio: 1.5);
        Assert.Equal(new Dictionary<string, RegionForm> { ["conv_a"] = RegionForm.Float }, choice.Forms);
        Assert.Equal(16, choice.Milliseconds);
        Assert.Contains("within the limit", choice.Note);
        Assert.DoesNotContain("float weights tried", choice.Note);

        var kept = LatencyGuard.Choose(["conv_b", "conv_c"], Weighted, f => new(10 + Cost(f, "conv_b") + Cost(f, "conv_c"), 0), source: 15, maxRatio: 1.5);
        Assert.Empty(kept.Forms);
        Assert.Contains("every quantized region kept int8", kept.Note);
    }

    [Fact]
    public void Float_weights_are_taken_only_where_they_read_constant_weights()
    {
        var choice = LatencyGuard.Choose(Costs.Keys.ToList(), new HashSet<string> { "conv_a" }, Time, source: 15, maxRatio: 1.0);
        Assert.Equal(["conv_a"], choice.FloatRegions); // fc_d's float form alone (17.5 against 18) is within the margin
        Assert.DoesNotContain(RegionForm.FloatWeights, choice.Forms.Values);
    }

    [Fact]
    public void A_form_faster_at_batch_1_but_slower_at_batch_n_is_not_taken()
    {
        // conv_a's float form wins at batch 1 and loses at batch 32 (the integer kernel's throughput): it stays int8.
        LatencyGuard.Timing Timed(IReadOnlyDictionary<string, RegionForm> f) =>
            new(f.ContainsKey("conv_a") ? 8 : 10, f.ContainsKey("conv_a") ? 400 : 300);
        var choice = LatencyGuard.Choose(["conv_a"], Weighted, Timed, source: 9, maxRatio: 2.0);
        Assert.Empty(choice.Forms);
        Assert.Equal(10, choice.Milliseconds);
    }

    /// <summary>
    /// A model with more regions than are timed alone (a detector's 100+ Convs) is searched by kind: each depthwise Conv
    /// is a little slower as int8 (together 40% of the model), each 1×1 Conv faster; no region alone moves the model by
    /// the margin, the kinds do, and the choice is depthwise float, 1×1 int8 (where before only all-int8 and all-float
    /// were compared, and all-float won).
    /// </summary>
    [Fact]
    public void Past_the_regions_timed_alone_the_kinds_are_timed_together()
    {
        var regions = Enumerable.Range(0, 40).Select(i => $"dw{i:00}").Concat(Enumerable.Range(0, 40).Select(i => $"pw{i:00}")).ToList();
        var kinds = regions.ToDictionary(r => r, r => r.StartsWith("dw", StringComparison.Ordinal) ? "Conv depthwise 3×3" : "Conv 1×1");
        // ms: depthwise 0.2 int8 / 0.1 float; 1×1 0.1 int8 / 0.2 float.
        LatencyGuard.Timing Timed(IReadOnlyDictionary<string, RegionForm> f) =>
            new(regions.Sum(r => (f.ContainsKey(r), r[0]) switch { (false, 'd') => 0.2, (true, 'd') => 0.1, (false, _) => 0.1, (true, _) => 0.2 }), 0);
        var timed = 0;
        var choice = LatencyGuard.Choose(regions, new HashSet<string>(), f => { timed++; return Timed(f); }, source: 12, maxRatio: 1.0, kinds: kinds);
        Assert.Equal(regions.Where(r => r.StartsWith("dw", StringComparison.Ordinal)), choice.FloatRegions.Order());
        Assert.Equal(8, choice.Milliseconds, 6);
        Assert.Contains("Conv depthwise 3×3 (40) float; int8: Conv 1×1 (40)", choice.Note);
        Assert.True(timed <= 5, $"{timed} timings"); // as quantized, each kind alone, all float

        // Without kinds the same model compares only all-int8 (12 ms) and all-float (12 ms): it stays int8.
        Assert.Empty(LatencyGuard.Choose(regions, new HashSet<string>(), Timed, source: 12, maxRatio: 1.0).Forms);
    }

    /// <summary>
    /// Timings within the guard's 3% margin of the limit meet it: a model whose fastest form is its source's speed (1.02×
    /// here, as noise on a shared machine gives) is within a limit of 1.0; 1.04× is not.
    /// </summary>
    [Theory]
    [InlineData(10.2, true)]
    [InlineData(10.4, false)]
    public void The_limit_allows_the_timing_margin(double milliseconds, bool within)
    {
        var choice = LatencyGuard.Choose(["conv_a"], new HashSet<string>(), _ => new(milliseconds, milliseconds), source: 10, maxRatio: 1.0);
        Assert.Equal(within, LatencyGuard.Within(choice.Milliseconds, 10, 1.0));
        Assert.Contains(within ? "within the limit" : "over the limit", choice.Note);
    }

    [Fact]
    public void Over_the_limit_a_form_within_it_at_batch_1_is_taken_even_when_slower_at_batch_n()
    {
        // As quantized 10 ms is past 1.0 × 9 ms; float (8 ms) loses at batch 32, but it is the only form that may ship.
        LatencyGuard.Timing Timed(IReadOnlyDictionary<string, RegionForm> f) =>
            new(f.ContainsKey("conv_a") ? 8 : 10, f.ContainsKey("conv_a") ? 400 : 300);
        var choice = LatencyGuard.Choose(["conv_a"], new HashSet<string>(), Timed, source: 9, maxRatio: 1.0);
        Assert.Equal(["conv_a"], choice.FloatRegions);
        Assert.Equal(8, choice.Milliseconds);
        Assert.Contains("within the limit), 400 ms at batch 32; a form within the limit at batch 1, taken although slower at batch 32 (400 against 300 ms)", choice.Note);
    }

    [Fact]
    public void All_float_wins_when_the_regions_only_gain_together()
    {
        // Each region alone gains nothing (a Q→DQ pair between them stays), all float at once drops the pairs.
        var choice = LatencyGuard.Choose(["x", "y"], new HashSet<string>(), f => new(f.Count == 2 ? 8 : 15, 0), source: 10, maxRatio: 1.0);
        Assert.Equal(["x", "y"], choice.FloatRegions.Order());
        Assert.Contains("all 2 quantized regions run float", choice.Note);
    }

    [Fact]
    public void The_same_timings_give_the_same_choice()
    {
        var a = LatencyGuard.Choose(Costs.Keys.ToList(), Weighted, Time, source: 15, maxRatio: 1.0);
        var b = LatencyGuard.Choose(Costs.Keys.Reverse().ToList(), Weighted, Time, source: 15, maxRatio: 1.0);
        Assert.Equal(a.Forms.OrderBy(f => f.Key), b.Forms.OrderBy(f => f.Key));
    }

    [Fact]
    public void Float_weights_hold_the_dequantized_values_and_the_model_gives_the_same_outputs()
    {
        Compress.Core.Torch.TorchRuntime.EnsureLoaded(); // before ONNX Runtime brings in the system libstdc++
        var random = new Random(2);
        var codes = Enumerable.Range(0, 24).Select(_ => (sbyte)random.Next(-127, 128)).ToArray();
        var model = new GraphBuilder("qdq")
            .Input("x", DataType.Float, "N", 4)
            .Initializer("scale", new[] { 0.05f }).Initializer("zero", new byte[] { 128 })
            .Initializer("wq", codes, 4, 6).Initializer("ws", new[] { 0.01f, 0.02f, 0.03f, 0.04f, 0.05f, 0.06f }, 6).Initializer("wz", new sbyte[6], 6)
            .Node("QuantizeLinear", ["x", "scale", "zero"], ["xq"], "q")
            .Node("DequantizeLinear", ["xq", "scale", "zero"], ["xd"], "dq")
            .Node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], "wdq", "", OnnxAttribute.Int("axis", 1))
            .Node("MatMul", ["xd", "w"], ["y"], "matmul")
            .Node("MatMul", ["x", "w"], ["z"], "float_reader")
            .Output("y", DataType.Float, "N", 6)
            .Output("z", DataType.Float, "N", 6)
            .Build();
        var input = Enumerable.Range(0, 8).Select(i => (float)random.NextDouble()).ToArray();
        float[] Run(OnnxModel m, string output)
        {
            using var session = new InferenceSession(m.Proto.ToByteArray());
            using var x = OrtValue.CreateTensorValueFromMemory(input, [2, 4]);
            using var results = session.Run(new RunOptions(), ["x"], [x], [output]);
            return results[0].GetTensorDataAsSpan<float>().ToArray();
        }

        var before = Run(model, "z");
        Assert.Equal(["matmul"], QdqRegions.Find(model).Select(OnnxGraph.Describe));
        QdqRegions.Apply(model, new Dictionary<string, RegionForm> { ["matmul"] = RegionForm.FloatWeights });
        var matmul = model.Graph.Nodes.Single(n => n.Name == "matmul");
        Assert.Equal("x", matmul.Input[0]);
        var weights = model.Graph.GetInitializer(matmul.Input[1]);
        Assert.Equal((int)DataType.Float, weights!.DataType);
        Assert.Equal([4L, 6L], weights.Dims);
        Assert.Contains(model.Graph.Nodes, n => n.Name == "wdq"); // the float reader still reads the int8 weights
        Assert.Equal(before, Run(model, "y")); // the same values: x·w, as the float reader of the DequantizeLinear computes it
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

    /// <summary>
    /// A run without <c>maxLatencyRatio</c> that writes a model slower than its source warns CMP0088 with both timings and
    /// the constraint to add; within the margin, by less than 0.05 ms, or with the constraint set (the guard's own business),
    /// it does not.
    /// </summary>
    [Fact]
    public void A_slower_model_warns_unless_the_spec_sets_a_latency_ratio()
    {
        static CompressionSpec Spec(string constraints) => SpecReader.Read(
            $$"""{ "data": { "calibration": { "path": "calib.npz" } }, "steps": [ { "quantize": { "weights": "int8" } } ]{{constraints}} }""", "spec.json", checkFiles: false);
        var slower = new LatencyFigures(32, OriginalBatch1Ms: 1.0, CompressedBatch1Ms: 1.4, OriginalBatchNMs: 20, CompressedBatchNMs: 22);

        var warning = CompressionPipeline.SlowerWarning(slower, Spec(""), "out.onnx");
        Assert.NotNull(warning);
        Assert.Equal(DiagnosticCodes.SlowerThanSource, warning.Code);
        Assert.Equal(DiagnosticSeverity.Warning, warning.Severity);
        Assert.Contains("1.40× as long", warning.Message, StringComparison.Ordinal);
        Assert.Contains("batch 1 1 → 1.4 ms, batch 32 20 → 22 ms", warning.Message, StringComparison.Ordinal);
        Assert.Contains("maxLatencyRatio", warning.Message, StringComparison.Ordinal);

        Assert.Null(CompressionPipeline.SlowerWarning(slower with { CompressedBatch1Ms = 1.08 }, Spec(""), "out.onnx"));
        Assert.Null(CompressionPipeline.SlowerWarning(new LatencyFigures(32, 0.018, 0.028, 0.142, 0.144), Spec(""), "out.onnx")); // 1.56× but 10 µs
        Assert.Null(CompressionPipeline.SlowerWarning(slower, Spec(""", "constraints": { "maxLatencyRatio": 1.5 }"""), "out.onnx"));
    }
}
