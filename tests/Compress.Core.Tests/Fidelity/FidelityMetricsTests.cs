using Compress.Core.Fidelity;
using Compress.Spec;

namespace Compress.Core.Tests.Fidelity;

public sealed class FidelityMetricsTests
{
    [Fact]
    public void The_registry_names_exactly_the_metrics_the_spec_accepts() =>
        Assert.Equal(SpecReader.Choices["data.metric"], FidelityMetrics.Names);

    [Theory]
    [InlineData(new long[] { 8, 10 }, false, OutputKind.ClassScores)]
    [InlineData(new long[] { 8, 25, 6625 }, false, OutputKind.ClassScores)]
    [InlineData(new long[] { 8, 16, 64 }, true, OutputKind.Features)]
    [InlineData(new long[] { 8, 512, 1, 1 }, false, OutputKind.Features)]
    [InlineData(new long[] { 8, 1 }, false, OutputKind.Features)]
    [InlineData(new long[] { 8 }, false, OutputKind.Features)]
    [InlineData(new long[] { 2, 8, 128 }, false, OutputKind.Features)] // an RNN state: axis 0 is not the batch
    public void Output_kinds_come_from_the_shape(long[] shape, bool masked, OutputKind kind) =>
        Assert.Equal(kind, OutputKinds.Classify(shape, 8, masked));

    /// <summary>What a declared shape settles before a run, and what only the run's shape can.</summary>
    [Fact]
    public void A_declared_shape_settles_features_only_where_no_run_could_give_class_scores()
    {
        Assert.Equal(OutputKind.Features, OutputKinds.Declared([null, 64, 1, 1], maskedSequence: false));
        Assert.Equal(OutputKind.Features, OutputKinds.Declared([null, 1], maskedSequence: false));
        Assert.Equal(OutputKind.Features, OutputKinds.Declared([null, 16, 1], maskedSequence: false));
        Assert.Equal(OutputKind.Features, OutputKinds.Declared([null, 16, 64], maskedSequence: true));
        Assert.Null(OutputKinds.Declared([null, 10], maskedSequence: false));
        Assert.Null(OutputKinds.Declared([null, null], maskedSequence: false));
        Assert.Null(OutputKinds.Declared([null, null, 6625], maskedSequence: false));
        Assert.Null(OutputKinds.Declared([null, null, null], maskedSequence: false));
    }

    [Fact]
    public void Agreement_is_never_taken_over_an_axis_one_wide()
    {
        // [N, 512, 1, 1] features whose sign flipped: argmax over the last axis (1 wide) would call this 100% agreement.
        var y = Enumerable.Range(0, 4 * 512).Select(i => (float)Math.Sin(i)).ToArray();
        var z = y.Select(v => -v).ToArray();
        var comparison = new OutputComparison("features", null);
        comparison.Add(new FidelityBatch(y, z, [4, 512, 1, 1], 0, 4, []), maskedSequence: false);
        var result = comparison.Result();
        Assert.Equal(OutputKind.Features, result.Kind);
        Assert.Null(result.Agreement);
        Assert.Equal(-1, result.MeanCosine!.Value, 6);
        Assert.True(result.SqnrDb < 0);
    }

    [Fact]
    public void Padding_positions_are_left_out_and_the_worst_samples_show_in_the_first_percentile()
    {
        // [2, 3, 2]: sample 0 has its last position masked (and wrong there), sample 1 is wrong at a real position.
        float[] y = [1, 0, 0, 1, 5, 5, 1, 1, 1, 1, 1, 1];
        float[] z = [1, 0, 0, 1, -9, 9, 1, 1, 1, 1, -1, -1];
        bool[] valid = [true, true, false, true, true, true];
        var comparison = new OutputComparison("last_hidden_state", null);
        comparison.Add(new FidelityBatch(y, z, [2, 3, 2], 0, 2, valid), maskedSequence: true);
        var result = comparison.Result();
        Assert.Equal(OutputKind.Features, result.Kind);
        Assert.Equal((1 + 1 / 3.0) / 2, result.MeanCosine!.Value, 9);
        Assert.Equal(1 / 3.0, result.P1Cosine!.Value, 9);
        Assert.Equal(10 * Math.Log10(8 / 8.0), result.SqnrDb, 9); // Σy² over real values 1+1+1+1+1+1+1+1 = 8; noise (2²+2²) = 8
    }

    [Fact]
    public void An_output_that_blew_up_fails_the_floor_rather_than_passing_it()
    {
        var metrics = new Compress.Core.Evaluation.ComparisonMetrics(4, "y",
            [new OutputFidelity("y", OutputKind.Features, [-1, 8]) { MeanCosine = double.NaN, P1Cosine = double.NaN, SqnrDb = double.NaN }]);
        var error = Assert.Throws<Compress.Core.Diagnostics.CompressException>(() =>
            FidelityGate.Check(new CompressionSpec { File = "spec.json" }, metrics, ["layer (int8, relative error 1E+000)"], "out.onnx"));
        Assert.Equal(Compress.Core.Diagnostics.DiagnosticCodes.FidelityBelowFloor, error.Diagnostic.Code);
        Assert.Contains("mean cosine NaN", error.Message);
    }

    [Fact]
    public void Class_scores_get_agreement_accuracy_cosine_and_sqnr()
    {
        float[] y = [3, 1, 0, 2, 1, 0];
        float[] z = [3, 1, 0, 1, 2, 0];
        var comparison = new OutputComparison("logits", [0, 0]);
        comparison.Add(new FidelityBatch(y, z, [2, 3], 0, 2, []), maskedSequence: false);
        var result = comparison.Result();
        Assert.Equal(OutputKind.ClassScores, result.Kind);
        Assert.Equal(0.5, result.Agreement);
        Assert.Equal(1.0, result.OriginalAccuracy);
        Assert.Equal(0.5, result.CompressedAccuracy);
        Assert.NotNull(result.MeanCosine);
    }
}
