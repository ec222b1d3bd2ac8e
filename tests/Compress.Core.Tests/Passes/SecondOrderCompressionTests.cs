using Compress.Core.Data;
using Compress.Core.Diagnostics;
using Compress.Core.Onnx;
using Compress.Core.Reports;
using Compress.Core.Tests.TestSupport;
using Xunit.Abstractions;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Core.Tests.Passes;

/// <summary>
/// The data-aware methods on the project's Fashion-MNIST MLP (784-300-100-10) and CNN, one shot, no fine-tuning:
/// 512 seeded calibration images, accuracy on the full 10,000-image test set in ONNX Runtime.
/// </summary>
public sealed class SecondOrderCompressionTests(ITestOutputHelper output) : TempDirectoryTest
{
    [Theory]
    [InlineData("mlp", 0.9, 0.15)]
    [InlineData("cnn", 0.95, 0.05)]
    public void Obs_and_woodfisher_beat_global_magnitude(string model, double sparsity, double margin)
    {
        var magnitude = Accuracy(Prune(model, "magnitude", sparsity));
        foreach (var method in new[] { "obs", "woodfisher" })
        {
            var report = Prune(model, method, sparsity);
            Assert.InRange(report.Size.OverallSparsity, sparsity - 0.01, sparsity + 0.005);
            var accuracy = Accuracy(report);
            output.WriteLine($"{model} {sparsity:P0}: {method} {accuracy:P2} vs magnitude {magnitude:P2}");
            Assert.True(accuracy >= magnitude + margin, $"{method} {accuracy:P2} is not {margin * 100:0} points above magnitude {magnitude:P2}");
        }
    }

    [Fact]
    public void Snip_reaches_its_sparsity_with_gradients_against_labels()
    {
        var report = Compress("mlp", """{ "prune": { "method": "snip", "sparsity": 0.5 } }""", labels: true);
        Assert.InRange(report.Size.OverallSparsity, 0.495, 0.505);
        Assert.True(report.Metrics!.AccuracyDrop <= 0.06, $"accuracy {report.Metrics.CompressedAccuracy:P2}");
    }

    [Fact]
    public void Gptq_int4_is_more_accurate_than_round_to_nearest()
    {
        var rtn = Compress("mlp", """{ "quantize": { "method": "rtn", "weights": "int4", "blockSize": 32 } }"""); // named: with data, int4 defaults to GPTQ
        var gptq = Compress("mlp", """{ "quantize": { "method": "gptq", "weights": "int4", "blockSize": 32 } }""");
        output.WriteLine($"int4 g32: round-to-nearest {Accuracy(rtn):P2} ({rtn.Metrics!.SqnrDb:0.0} dB), GPTQ {Accuracy(gptq):P2} ({gptq.Metrics!.SqnrDb:0.0} dB)");
        Assert.True(Accuracy(gptq) > Accuracy(rtn), $"GPTQ {Accuracy(gptq):P2} vs round-to-nearest {Accuracy(rtn):P2}");
        Assert.True(gptq.Metrics.SqnrDb > rtn.Metrics.SqnrDb + 6);
        Assert.Equal(rtn.Size.CompressedBytes, gptq.Size.CompressedBytes);
        Assert.All(gptq.Layers, l => Assert.Contains("GPTQ", l.Format));
    }

    /// <summary>GPTQ onto QDQ's own per-tensor scale: the written format is unchanged, the rounding better.</summary>
    [Fact]
    public void Gptq_int8_static_qdq_beats_round_to_nearest_per_tensor()
    {
        var rtn = Compress("cnn", """{ "quantize": { "weights": "int8", "activations": "uint8", "granularity": "tensor" } }""");
        var gptq = Compress("cnn", """{ "quantize": { "method": "gptq", "weights": "int8", "activations": "uint8", "granularity": "tensor" } }""");
        output.WriteLine($"int8 per-tensor QDQ: round-to-nearest {Accuracy(rtn):P2} ({rtn.Metrics!.SqnrDb:0.0} dB), GPTQ {Accuracy(gptq):P2} ({gptq.Metrics!.SqnrDb:0.0} dB)");
        Assert.True(gptq.Metrics.SqnrDb > rtn.Metrics.SqnrDb + 1, $"SQNR {gptq.Metrics.SqnrDb:0.0} vs {rtn.Metrics.SqnrDb:0.0} dB");
        Assert.True(Accuracy(gptq) >= Accuracy(rtn));
        Assert.Equal(rtn.Size.CompressedBytes, gptq.Size.CompressedBytes);
        Assert.All(gptq.Layers, l => Assert.Equal("int8 QDQ per-tensor (GPTQ)", l.Format));
        Assert.DoesNotContain(gptq.Notes, n => n.Contains("layer inputs taken from ONNX Runtime", StringComparison.Ordinal)); // one sequential pass
    }

    [Fact]
    public void Obs_two_of_four_then_gptq_int4_is_accurate_and_deterministic()
    {
        const string steps = """
            { "prune": { "method": "obs", "sparsity": 0.5, "pattern": "2:4" } },
            { "quantize": { "method": "gptq", "weights": "int4", "blockSize": 32, "actOrder": true } }
            """;
        var report = Compress("mlp", steps);
        Assert.True(report.Metrics!.AccuracyDrop <= 0.01, $"accuracy {report.Metrics.CompressedAccuracy:P2}");
        Assert.All(report.Layers, l => Assert.Equal(0.5, l.Sparsity, 3));
        var again = Compress("mlp", steps, outputName: "again.onnx");
        Assert.Equal(File.ReadAllBytes(report.Output), File.ReadAllBytes(again.Output));
    }

    [Fact]
    public void Auto_lands_within_two_points_of_the_best_feasible_sparsity()
    {
        var report = Compress("mlp", """{ "prune": { "method": "obs", "sparsity": "auto" } }""", constraints: """{ "maxAccuracyDrop": 0.01 }""");
        var search = report.Search!;
        output.WriteLine(string.Join("\n", search.Points.Select(p => $"{p.Sparsity:P1} {p.Accuracy:P2} {(p.Feasible ? "met" : "not met")}")));
        Assert.InRange(search.Points.Count, 1, 10);
        Assert.True(report.Metrics!.AccuracyDrop <= 0.01 + 1e-9); // a drop of exactly 100 of 10,000 images meets the limit
        Assert.InRange(report.Size.OverallSparsity, search.Chosen - 0.005, search.Chosen + 0.005);
        Assert.Contains(search.Points, p => !p.Feasible && p.Sparsity > search.Chosen && p.Sparsity <= search.Chosen + 0.02);

        // The benchmark grid's best feasible point (70/80/90%) is not above the chosen sparsity by more than 2 points.
        var best = new[] { 0.7, 0.8, 0.9 }.Where(s => Prune("mlp", "obs", s).Metrics!.AccuracyDrop <= 0.01).DefaultIfEmpty(0).Max();
        Assert.True(search.Chosen >= best - 0.02, $"chose {search.Chosen:P1}, grid feasible up to {best:P0}");
    }

    [Fact]
    public void A_gradient_method_names_the_operator_the_executor_lacks()
    {
        var random = new Random(1);
        var model = new GraphBuilder("sin")
            .Input("input", DataType.Float, "batch", 784)
            .Initializer("W", Enumerable.Range(0, 784 * 10).Select(_ => (float)random.NextDouble() - 0.5f).ToArray(), 784, 10)
            .Node("MatMul", ["input", "W"], ["z"], "matmul")
            .Node("Sin", ["z"], ["logits"], "sin")
            .Output("logits", DataType.Float, "batch", 10)
            .Build();
        var path = Path.Combine(Dir, "sin.onnx");
        model.Save(path);
        var spec = SpecFiles.Load(Dir, $$"""
            { "data": { "calibration": { "path": {{SpecFiles.Quote(FashionData.Calibration(false))}}, "samples": 64 } },
              "steps": [ { "prune": { "method": "woodfisher", "sparsity": 0.5 } } ] }
            """);
        var error = Assert.Throws<CompressException>(() => CompressionPipeline.Run(path, spec, Path.Combine(Dir, "out.onnx")));
        Assert.Equal(DiagnosticCodes.OperatorNotExecutable, error.Diagnostic.Code);
        Assert.Contains("Sin (1×, e.g. 'sin')", error.Message);
        Assert.False(File.Exists(Path.Combine(Dir, "out.onnx")));
    }

    /// <summary>
    /// The layer-wise methods take each layer's input from one sequential run in the TorchSharp executor; a model the
    /// executor cannot run (here a Sin after the layer) falls back to ONNX Runtime per layer — said in the notes — and
    /// the two give the same layer (Hessians equal up to float rounding).
    /// </summary>
    [Fact]
    public void Layer_inputs_come_from_one_sequential_run_or_from_onnx_runtime_when_the_executor_cannot_run_the_model()
    {
        var random = new Random(2);
        var weights = Enumerable.Range(0, 784 * 10).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
        OnnxModel Model(string last) => new GraphBuilder(last)
            .Input("input", DataType.Float, "batch", 784)
            .Initializer("W", weights, 784, 10)
            .Node("MatMul", ["input", "W"], ["z"], "matmul")
            .Node(last, ["z"], ["logits"], "last")
            .Output("logits", DataType.Float, "batch", 10)
            .Build();
        var spec = SpecFiles.Load(Dir, $$"""
            { "data": { "calibration": { "path": {{SpecFiles.Quote(FashionData.Calibration(false))}}, "samples": 256 } },
              "steps": [ { "prune": { "method": "obs", "sparsity": 0.5, "scope": "layer" } } ], "constraints": { "minSqnrDb": -100 } }
            """);
        CompressionReport Run(string last)
        {
            var path = Path.Combine(Dir, last + ".onnx");
            Model(last).Save(path);
            return CompressionPipeline.Run(path, spec, Path.Combine(Dir, last + ".out.onnx"), measureLatency: false);
        }

        var sequential = Run("Tanh");
        var perLayer = Run("Sin");
        Assert.DoesNotContain(sequential.Notes, n => n.Contains("layer inputs taken from ONNX Runtime", StringComparison.Ordinal));
        Assert.Contains(perLayer.Notes, n => n.StartsWith("obs: layer inputs taken from ONNX Runtime, one run of the model per layer", StringComparison.Ordinal) && n.Contains("Sin"));
        // 256 samples for 784 inputs: the report says the Hessian is rank-deficient and how many samples would do.
        Assert.Contains("rank-deficient layer-wise Hessians (fewer calibration rows than inputs) in 1 layer: matmul (256 rows for 784 inputs); the data-aware methods may do better with at least 784 calibration samples", sequential.Notes);
        var (x, y) = (sequential.Layers.Single(), perLayer.Layers.Single());
        Assert.Equal(x.Sparsity, y.Sparsity);
        Assert.Equal(x.RelativeError, y.RelativeError, 1e-4); // the same weights pruned, the same compensation
    }

    /// <summary>
    /// Samples whose inputs pass a chunk's budget (16 MB) run through the executor in chunks, node by node; the layer
    /// Hessian over all chunks equals ONNX Runtime's per-layer one. The layer is 2,048 inputs wide, so its Hessian is
    /// accumulated by symmetric strips in float32 — the path of a wide Conv.
    /// </summary>
    [Fact]
    public void Samples_beyond_one_chunk_flow_in_chunks_and_give_the_same_layer_as_onnx_runtime()
    {
        const int features = 2048, samples = 4096; // 32 MB of inputs: two chunks
        var random = new Random(3);
        var weights = Enumerable.Range(0, features * 16).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
        var inputs = new float[samples * features];
        for (var i = 0; i < inputs.Length; i++)
        {
            inputs[i] = (float)(random.NextDouble() * 2 - 1) * (1 + i % features % 7); // columns of several scales
        }

        var data = Path.Combine(Dir, "wide.npz");
        ArrayFile.Write(data, NpyArray.Create("input", inputs, samples, features));
        var spec = SpecFiles.Load(Dir, $$"""
            { "data": { "calibration": { "path": {{SpecFiles.Quote(data)}} } },
              "steps": [ { "prune": { "method": "obs", "sparsity": 0.5, "scope": "layer" } } ], "constraints": { "minSqnrDb": -100 } }
            """);
        (CompressionReport Report, List<string> Progress) Run(string last)
        {
            var path = Path.Combine(Dir, last + ".onnx");
            new GraphBuilder(last)
                .Input("input", DataType.Float, "batch", features)
                .Initializer("W", weights, features, 16)
                .Node("MatMul", ["input", "W"], ["z"], "matmul")
                .Node(last, ["z"], ["out"], "last")
                .Output("out", DataType.Float, "batch", 16)
                .Build().Save(path);
            var progress = new List<string>();
            return (CompressionPipeline.Run(path, spec, Path.Combine(Dir, last + ".out.onnx"), progress.Add, measureLatency: false), progress);
        }

        var (chunked, lines) = Run("Tanh");
        var (perLayer, _) = Run("Sin");
        Assert.Contains("obs: one sequential pass over 4,096 samples in 2 chunks", lines);
        Assert.Contains(perLayer.Notes, n => n.StartsWith("obs: layer inputs taken from ONNX Runtime", StringComparison.Ordinal));
        var (x, y) = (chunked.Layers.Single(), perLayer.Layers.Single());
        Assert.Equal(0.5, x.Sparsity, 1e-9);
        Assert.Equal(x.Sparsity, y.Sparsity);
        Assert.Equal(x.RelativeError, y.RelativeError, 1e-4);
    }

    /// <summary>
    /// Dense targets on a two-layer MLP (64-32-16, ReLU between): the first layer sees the dense input either way and
    /// comes out bit for bit the same; the second, refitted to the uncompressed model's response before OBS, reproduces
    /// the dense model's output better, ‖WX − ŴX̃‖ (X its input in the dense model, X̃ in the pruned one) smaller than
    /// with <c>denseTargets: false</c>.
    /// </summary>
    [Fact]
    public void Dense_targets_leave_the_first_layer_as_it_was_and_bring_the_second_closer_to_the_dense_output()
    {
        const int samples = 512, inputs = 64, hidden = 32, outputs = 16;
        var random = new Random(5);
        float[] Values(int count, double scale) => Enumerable.Range(0, count).Select(_ => (float)((random.NextDouble() * 2 - 1) * scale)).ToArray();
        var (w1, w2) = (Values(inputs * hidden, 0.3), Values(hidden * outputs, 0.3));
        var mixing = Values(inputs * inputs, 0.5);
        var raw = Values(samples * inputs, 1);
        var data = new float[samples * inputs]; // correlated inputs, where second-order compensation matters
        for (var n = 0; n < samples; n++)
        {
            for (var j = 0; j < inputs; j++)
            {
                var sum = 0f;
                for (var k = 0; k < inputs; k++)
                {
                    sum += raw[n * inputs + k] * mixing[k * inputs + j];
                }

                data[n * inputs + j] = sum;
            }
        }

        var path = Path.Combine(Dir, "two.onnx");
        new GraphBuilder("two")
            .Input("input", DataType.Float, "batch", inputs)
            .Initializer("W1", w1, inputs, hidden)
            .Node("MatMul", ["input", "W1"], ["z1"], "fc1")
            .Node("Relu", ["z1"], ["h"], "relu")
            .Initializer("W2", w2, hidden, outputs)
            .Node("MatMul", ["h", "W2"], ["out"], "fc2")
            .Output("out", DataType.Float, "batch", outputs)
            .Build().Save(path);
        var npz = Path.Combine(Dir, "two.npz");
        ArrayFile.Write(npz, NpyArray.Create("input", data, samples, inputs));
        (string W1, float[] Output, CompressionReport Report) Run(bool dense)
        {
            var spec = SpecFiles.Load(Dir, $$"""
                { "data": { "calibration": { "path": {{SpecFiles.Quote(npz)}} } },
                  "steps": [ { "prune": { "method": "obs", "sparsity": 0.7, "scope": "layer", "denseTargets": {{(dense ? "true" : "false")}} } } ], "constraints": { "minSqnrDb": -100 } }
                """);
            var output = Path.Combine(Dir, $"two.{dense}.onnx");
            var report = CompressionPipeline.Run(path, spec, output, measureLatency: false);
            var first = report.Layers.Single(l => l.Weight == "W1");
            var w1 = $"{first.Sparsity:R} {first.RelativeError:R}"; // the weight's change, to the last bit
            return (w1, Outputs(output), report);
        }

        float[] Outputs(string model)
        {
            using var session = new Microsoft.ML.OnnxRuntime.InferenceSession(model);
            using var input = Microsoft.ML.OnnxRuntime.OrtValue.CreateTensorValueFromMemory(data, [samples, inputs]);
            using var results = session.Run(new Microsoft.ML.OnnxRuntime.RunOptions(), ["input"], [input], ["out"]);
            return results[0].GetTensorDataAsSpan<float>().ToArray();
        }

        var (a1, withDense, reportDense) = Run(true);
        var (b1, without, _) = Run(false);
        var target = Outputs(path); // WX: the dense model's output
        Assert.DoesNotContain(reportDense.Notes, n => n.Contains("dense targets skipped", StringComparison.Ordinal));
        Assert.Equal(b1, a1); // the first layer sees the dense input: unchanged
        double Error(float[] pruned) => target.Zip(pruned, (t, p) => (double)(t - p) * (t - p)).Sum() / target.Sum(t => (double)t * t);
        var (errorDense, errorPlain) = (Error(withDense), Error(without)); // = ‖WX − ŴX̃‖²/‖WX‖² of the second layer (no activation after it)
        output.WriteLine($"relative output error: dense targets {errorDense:E4}, without {errorPlain:E4}");
        Assert.True(errorDense < 0.9 * errorPlain, $"dense targets {errorDense:E4} vs without {errorPlain:E4}");
    }

    /// <summary>
    /// Issue 16's CNN at 95 % from 512 images: fc1 has 1,568 inputs and 512 rows, so its Hessian's off-diagonal part is
    /// mostly sampling noise. Shrinking the Hessian of such a layer towards its diagonal (<c>shrinkage</c>, by default 0.3 on
    /// the layers with fewer rows than inputs) lifts the one-shot accuracy from 87.97 % (0) past the half-gap goal of
    /// 88.66 % (dense 91.85 %, the issue's baseline 85.47 %).
    /// </summary>
    [Fact]
    public void Shrinking_the_rank_deficient_hessians_closes_half_the_gap_on_the_cnn_at_95_percent()
    {
        var shrunk = Prune("cnn", "obs", 0.95); // the default: fc1 (512 rows for 1,568 inputs) shrunk by 0.3, the convs not
        var plain = Compress("cnn", """{ "prune": { "method": "obs", "sparsity": 0.95, "shrinkage": 0 } }""", outputName: "plain.onnx");
        Assert.InRange(shrunk.Size.OverallSparsity, 0.94, 0.955);
        var (before, after) = (Accuracy(plain), Accuracy(shrunk));
        output.WriteLine($"cnn 95 %: shrinkage 0 {before:P2}, default {after:P2}");
        Assert.True(after >= 0.8866, $"the default shrinkage gives {after:P2}, below the goal 88.66 %");
        Assert.True(after >= before + 0.005, $"the default shrinkage {after:P2} is not half a point above {before:P2}");
    }

    private CompressionReport Prune(string model, string method, double sparsity) =>
        Compress(model, $$"""{ "prune": { "method": "{{method}}", "sparsity": {{sparsity}} } }""");

    /// <summary>These tests measure accuracy at a set sparsity, collapses included: the default floor is relaxed.</summary>
    private const string SweepConstraints = """{ "minAgreement": 0 }""";

    private static double Accuracy(CompressionReport report) => report.Metrics!.CompressedAccuracy!.Value;

    private CompressionReport Compress(string model, string steps, bool labels = false, string? constraints = null, string outputName = "out.onnx")
    {
        var image = model == "cnn";
        var spec = SpecFiles.Load(Dir, $$"""
        {
          "data": {
            "calibration": { "path": {{SpecFiles.Quote(FashionData.Calibration(image))}}, "samples": 512, "seed": 7{{(labels ? ", \"labels\": \"labels\"" : "")}} },
            "evaluation": { "path": {{SpecFiles.Quote(FashionData.Test(image))}}, "labels": "labels" }
          },
          "steps": [ {{steps}} ], "constraints": {{constraints ?? SweepConstraints}}
        }
        """);
        var report = CompressionPipeline.Run(image ? FashionData.CnnModel : FashionData.MlpModel, spec, Path.Combine(Dir, outputName), measureLatency: false);
        output.WriteLine(ReportWriter.Markdown(report));
        return report;
    }
}
