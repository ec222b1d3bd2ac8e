using Compress.Core.Diagnostics;
using Compress.Core.Evaluation;
using Compress.Core.Execution;
using Compress.Core.Onnx;
using Compress.Core.Passes;
using Compress.Core.Passes.Finetune;
using Compress.Core.Reports;
using Compress.Core.Tests.TestSupport;
using Compress.Core.Torch;
using Compress.Spec;
using Compress.Spec.Methods;
using Xunit;
using Xunit.Abstractions;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Tests.Passes.Finetune;

/// <summary>
/// The <c>finetune</c> step on the Fashion-MNIST models: distillation recovers what pruning lost with the masks kept and
/// the same bytes every run; quantized weights train on their grids (the training graph computes what the working model
/// computes, and an untrained shadow writes back the same codes); the holdout keeps the best state; a gradual prune
/// raises the sparsity in stages.
/// </summary>
public sealed class FinetuneTests(ITestOutputHelper output) : TempDirectoryTest
{
    private const string Prune = """{ "prune": { "method": "magnitude", "sparsity": 0.95 } }""";

    [Fact]
    public void Distillation_recovers_a_pruned_mlp_with_its_masks_and_the_same_bytes_every_run()
    {
        var pruned = Compress(Prune, "pruned.onnx");
        var tuned = Compress($$"""{{Prune}}, { "finetune": { "steps": 300, "learningRate": 0.002 } }""", "tuned.onnx");
        output.WriteLine($"95 % magnitude: {pruned.Metrics!.CompressedAccuracy:P2} → with finetune {tuned.Metrics!.CompressedAccuracy:P2}");
        Assert.True(tuned.Metrics.CompressedAccuracy > pruned.Metrics.CompressedAccuracy + 0.05, "distillation recovers more than 5 points");
        Assert.Contains(tuned.Notes, n => n.StartsWith("finetune: distilled the original model's 'logits' (kl) on ", StringComparison.Ordinal));

        // Masks held: every weight pruned is still zero, and no layer lost sparsity.
        var before = OnnxModel.Load(pruned.Output);
        var after = OnnxModel.Load(tuned.Output);
        Assert.Equal(pruned.Layers.Select(l => (l.Node, l.Sparsity)), tuned.Layers.Select(l => (l.Node, l.Sparsity)));
        foreach (var layer in pruned.Layers)
        {
            using var w0 = Dense(before, layer.Weight);
            using var w1 = Dense(after, layer.Weight);
            Assert.Equal(0, w1.masked_select(w0.eq(0)).count_nonzero().ToInt64());
            Assert.True(w1.ne(w0).any().ToBoolean(), $"{layer.Weight} trained");
        }

        var again = Compress($$"""{{Prune}}, { "finetune": { "steps": 300, "learningRate": 0.002 } }""", "again.onnx");
        Assert.Equal(File.ReadAllBytes(tuned.Output), File.ReadAllBytes(again.Output));
    }

    [Fact]
    public void Int4_weights_train_on_their_grids_and_stay_matmulnbits()
    {
        const string Steps = """{ "prune": { "method": "magnitude", "sparsity": 0.9 } }, { "quantize": { "method": "rtn", "weights": "int4", "activations": "none", "form": "kernel" } }""";
        var quantized = Compress(Steps, "int4.onnx");
        var tuned = Compress($$"""{{Steps}}, { "finetune": { "steps": 300, "learningRate": 0.002 } }""", "int4_tuned.onnx");
        output.WriteLine($"90 % + int4: {quantized.Metrics!.CompressedAccuracy:P2} → with finetune {tuned.Metrics!.CompressedAccuracy:P2}");
        Assert.True(tuned.Metrics.CompressedAccuracy > quantized.Metrics.CompressedAccuracy + 0.01);
        Assert.Equal(quantized.Layers.Select(l => (l.Node, l.Format)), tuned.Layers.Select(l => (l.Node, l.Format)));
        Assert.All(tuned.Layers, l => Assert.StartsWith("int4 MatMulNBits", l.Format, StringComparison.Ordinal));
        Assert.Equal(quantized.Size.CompressedBytes, tuned.Size.CompressedBytes);
    }

    [Theory]
    [InlineData(false, """{ "quantize": { "weights": "int8", "activations": "int8" } }""")]
    [InlineData(true, """{ "quantize": { "method": "rtn", "weights": "int4", "activations": "none", "form": "kernel" } }""")]
    [InlineData(true, """{ "quantize": { "weights": "int8", "activations": "none", "form": "kernel" } }""")]
    public void The_training_graph_computes_what_the_quantized_model_computes_and_writes_back_the_same_codes(bool mlp, string quantize)
    {
        var report = Compress(quantize, "quantized.onnx", mlp);
        var model = OnnxModel.Load(report.Output);
        var spec = SpecFiles.Load(Dir, $$"""{ "data": { "calibration": { "path": {{SpecFiles.Quote(FashionData.Calibration(!mlp))}} } }, "steps": [ { "prune": { "sparsity": 0.5 } }, { "finetune": {} } ] }""");
        var step = (FinetuneStep)spec.Steps[1];
        var context = new CompressionContext(model, spec, null);
        var (training, weights) = TrainingModel.Build(context, step);
        Assert.NotEmpty(weights);
        output.WriteLine(string.Join(", ", training.Proto.Graph.Node.Select(n => n.OpType)));
        Assert.DoesNotContain(training.Proto.Graph.Node, n => n.OpType is "MatMulNBits" or "QuantizeLinear");

        var data = global::Compress.Core.Calibration.CalibrationSet.Load(FashionData.Test(!mlp), model, null, 64, 3);
        using var graph = new TorchGraph(training);
        foreach (var w in weights)
        {
            graph.SetWeight(w.Value, w.Forward().detach());
        }

        using var inputs = data.Inputs.Values.Single().Data is var bytes ? empty(data.Inputs.Values.Single().Shape) : null!;
        bytes.AsSpan().CopyTo(inputs.bytes);
        using var trained = graph.Run(new Dictionary<string, Tensor> { [data.Inputs.Keys.Single()] = inputs })[graph.Outputs[0]];
        using var runner = new OrtModelRunner(model, optimize: false);
        using var results = runner.RunBatch(data, 0, data.Count, [graph.Outputs[0]]);
        using var expected = global::Compress.Core.Passes.SecondOrder.LayerHessian.ToTorch(results.First());
        // The two executors' float sums differ in the last bits, so an activation lying on a rounding boundary of its
        // int8 grid can land one step apart; that moves its sample's outputs by about a step's worth and no other sample's.
        using var gaps = (trained - expected).abs().div(expected.abs().max());
        var gap = gaps.max().ToDouble();
        var off = gaps.gt(1e-4).any(1).sum().ToInt64();
        output.WriteLine($"largest difference {gap:E2} of the output's scale; {off} of {gaps.shape[0]} samples beyond 1e-4");
        Assert.True(gap < 1e-2, $"difference {gap}");
        Assert.True(off <= 2, $"{off} of {gaps.shape[0]} samples differ by more than 1e-4 of the scale");

        var stored = model.Proto.Graph.Initializer.ToDictionary(t => t.Name, t => t.RawData.ToByteArray());
        foreach (var w in weights)
        {
            w.WriteBack(w.Shadow.detach());
            w.Dispose();
        }

        Assert.All(model.Proto.Graph.Initializer, t => Assert.Equal(stored[t.Name], t.RawData.ToByteArray()));
    }

    [Fact]
    public void A_learning_rate_that_diverges_keeps_the_state_the_steps_left()
    {
        var pruned = Compress(Prune, "pruned.onnx");
        var diverged = Compress($$"""{{Prune}}, { "finetune": { "steps": 40, "optimizer": "sgd", "learningRate": 5, "patience": 2 } }""", "diverged.onnx");
        Assert.Contains(diverged.Notes, n => n.Contains("no step improved it", StringComparison.Ordinal));
        Assert.Equal(File.ReadAllBytes(pruned.Output), File.ReadAllBytes(diverged.Output));
    }

    [Fact]
    public void A_gradual_prune_raises_the_sparsity_in_stages_with_distillation_between()
    {
        Assert.Equal([0.488, 0.784, 0.936, 0.992, 1.0], Enumerable.Range(1, 5).Select(t => Math.Round(GradualSchedule.Sparsity(1, t, 5), 4)));
        Assert.Equal(1.0, Enumerable.Range(1, 4).Sum(t => GradualSchedule.Share(t, 4)), 12);
        var stages = new List<string>();
        var spec = SpecFiles.Load(Dir, SpecJson("""{ "prune": { "method": "magnitude", "sparsity": 0.95, "schedule": { "steps": 3 } } }, { "finetune": { "steps": 300 } }""", true));
        var report = CompressionPipeline.Run(FashionData.MlpModel, spec, Path.Combine(Dir, "gradual.onnx"), s => stages.Add(s), measureLatency: false);
        Assert.Equal(3, stages.Count(s => s.StartsWith("prune/magnitude (spec line", StringComparison.Ordinal)));
        Assert.Contains(stages, s => s.EndsWith("stage 3/3 at 95.0 %", StringComparison.Ordinal));
        Assert.Equal(3, report.Notes.Count(n => n.StartsWith("finetune: distilled", StringComparison.Ordinal)));
        Assert.Equal(0.95, report.Size.OverallSparsity, 2);
        var oneShot = Compress(Prune, "one_shot.onnx");
        output.WriteLine($"95 %: one shot {oneShot.Metrics!.CompressedAccuracy:P2}, gradual with distillation {report.Metrics!.CompressedAccuracy:P2}");
        Assert.True(report.Metrics.CompressedAccuracy > oneShot.Metrics.CompressedAccuracy + 0.05);
    }

    [Fact]
    public void Fake_quantization_passes_the_gradient_straight_through()
    {
        TorchRuntime.EnsureLoaded();
        var node = new Compress.Core.Onnx.Proto.NodeProto { OpType = TrainingModel.FakeQuantize, Domain = TrainingModel.Domain, Output = { "y" } };
        using var x = tensor(new[] { -1.26f, 0.04f, 0.5f, 3.0f }).requires_grad_(true);
        using var scale = tensor(0.1f);
        using var zero = tensor(new sbyte[] { 0 }).reshape([]);
        var y = TorchOps.Run(new OpCall(node, [x, scale, zero], 21))[0];
        Assert.Equal(new[] { -1.3f, 0f, 0.5f, 3.0f }, y.data<float>().ToArray().Select(v => MathF.Round(v, 5)));
        y.sum().backward();
        Assert.Equal(new[] { 1f, 1f, 1f, 1f }, x.grad!.data<float>().ToArray());
    }

    [Theory]
    [InlineData("""{ "finetune": {} }""", "CMP0107", "put it after a prune, quantize or factorize step")]
    [InlineData("""{ "quantize": { "weights": "fp16" } }, { "finetune": {} }""", "CMP0107", "not the fp16 ones")]
    [InlineData("""{ "prune": { "sparsity": 0.9, "schedule": { "steps": 4 } } }""", "CMP0107", "put a 'finetune' step right after")]
    [InlineData("""{ "prune": { "sparsity": 0.5, "pattern": "2:4", "method": "obs", "schedule": { "steps": 4 } } }, { "finetune": {} }""", "CMP0107", "pattern 2:4 fixes")]
    [InlineData("""{ "prune": { "sparsity": 0.9, "schedule": { "steps": 1 } } }, { "finetune": {} }""", "CMP0103", "'schedule.steps' is 1")]
    [InlineData("""{ "prune": { "sparsity": 0.9, "schedule": { "stages": 4 } } }, { "finetune": {} }""", "CMP0101", "unknown key 'stages'")]
    [InlineData("""{ "prune": { "sparsity": 0.9 } }, { "finetune": { "loss": "mse", "temperature": 3 } }""", "CMP0107", "'temperature' softens")]
    [InlineData("""{ "prune": { "sparsity": 0.9 } }, { "finetune": { "optimizer": "lbfgs" } }""", "CMP0103", "allowed: adam, sgd")]
    [InlineData("""{ "prune": { "sparsity": 0.9 } }, { "finetune": { "holdout": 0.9 } }""", "CMP0103", "'holdout' is 0.9")]
    public void Finetune_specs_are_checked(string steps, string code, string message)
    {
        var error = Assert.Throws<SpecException>(() => SpecReader.Read($$"""{ "data": { "calibration": { "path": "c.npz" } }, "steps": [ {{steps}} ] }""", "spec.json", checkFiles: false));
        Assert.Equal(code, error.Code);
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
        Assert.True(error.Line > 0);
    }

    [Fact]
    public void Finetune_needs_inputs_and_takes_training_data_without_labels()
    {
        var error = Assert.Throws<SpecException>(() => SpecReader.Read("""{ "steps": [ { "prune": { "sparsity": 0.9 } }, { "finetune": {} } ] }""", "spec.json", checkFiles: false));
        Assert.Contains("set data.training.path", error.Message, StringComparison.Ordinal);
        var spec = SpecReader.Read("""{ "data": { "training": { "path": "t.npz", "samples": 100 } }, "steps": [ { "prune": { "sparsity": 0.9 } }, { "finetune": { "steps": 10 } } ] }""", "spec.json", checkFiles: false);
        Assert.Equal(100, spec.Training!.Samples);
        var finetune = Assert.IsType<FinetuneStep>(spec.Steps[1]);
        Assert.Equal((10, 128, 1e-3, "adam", "auto", 2.0, 0.1, 5), (finetune.Steps, finetune.BatchSize, finetune.LearningRate, finetune.Optimizer, finetune.Loss, finetune.Temperature, finetune.Holdout, finetune.Patience));
        var metric = Assert.Throws<SpecException>(() => SpecReader.Read("""{ "data": { "training": { "path": "t.npz", "metric": "accuracy", "labels": "l" } }, "steps": [ { "prune": { "sparsity": 0.9 } } ] }""", "spec.json", checkFiles: false));
        Assert.Contains("training data takes no metric", metric.Message, StringComparison.Ordinal);
        var unused = Assert.Throws<SpecException>(() => SpecReader.Read("""{ "data": { "training": { "path": "t.npz" } }, "steps": [ { "prune": { "sparsity": 0.9 } } ] }""", "spec.json", checkFiles: false));
        Assert.Contains("data.training holds inputs for a 'finetune' step", unused.Message, StringComparison.Ordinal);
        Assert.True(unused.Line == 1 && unused.Column > 1, $"at {unused.Line}:{unused.Column}");
    }

    private CompressionReport Compress(string steps, string outputName, bool mlp = true)
    {
        var report = CompressionPipeline.Run(mlp ? FashionData.MlpModel : FashionData.CnnModel, SpecFiles.Load(Dir, SpecJson(steps, mlp)), Path.Combine(Dir, outputName), measureLatency: false);
        output.WriteLine(string.Join("\n", report.Notes.Where(n => n.StartsWith("finetune", StringComparison.Ordinal))));
        return report;
    }

    private static string SpecJson(string steps, bool mlp) => $$"""
        { "data": {
            "calibration": { "path": {{SpecFiles.Quote(FashionData.Calibration(!mlp))}} },
            "evaluation": { "path": {{SpecFiles.Quote(FashionData.Test(!mlp))}}, "labels": "labels" }
          },
          "constraints": { "minAgreement": 0 },
          "steps": [ {{steps}} ] }
        """;

    /// <summary>A weight of a written model as dense values (bitmask or sparse storage expanded by running the rebuild).</summary>
    private static Tensor Dense(OnnxModel model, string name)
    {
        if (model.Graph.GetInitializer(name) is { } plain)
        {
            return model.ToTorch(plain);
        }

        using var runner = OrtModelRunner.Exposing(model, [name]);
        var data = global::Compress.Core.Calibration.CalibrationSet.Load(FashionData.Test(false), model, null, 1, 0);
        using var values = runner.RunBatch(data, 0, 1, [name]);
        return global::Compress.Core.Passes.SecondOrder.LayerHessian.ToTorch(values.First());
    }
}
