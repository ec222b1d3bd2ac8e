using Compress.Core.Diagnostics;
using Compress.Core.Tests.TestSupport;
using Compress.Core.Torch;
using Microsoft.ML.OnnxRuntime;
using TorchSharp;
using TorchSharp.Modules;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Compress.Core.Tests.Torch;

/// <summary>TorchSharp Sequential → ONNX: ONNX Runtime gives the module's outputs (1e-5 relative), for every layer type exported.</summary>
public sealed class SequentialExporterTests(ITestOutputHelper output) : TempDirectoryTest
{
    [Fact]
    public void An_exported_cnn_gives_the_modules_outputs()
    {
        TorchRuntime.EnsureLoaded();
        manual_seed(3);
        var model = nn.Sequential(
            ("conv1", nn.Conv2d(1, 8, 3, padding: 1)),
            ("bn1", nn.BatchNorm2d(8)),
            ("relu1", nn.ReLU()),
            ("pool1", nn.MaxPool2d(2)),
            ("block", nn.Sequential(
                ("conv2", nn.Conv2d(8, 16, 5, stride: 1, padding: 2, groups: 2)),
                ("relu2", nn.ReLU()),
                ("pool2", nn.AvgPool2d(2)))),
            ("drop", nn.Dropout(0.3)),
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(16 * 7 * 7, 32)),
            ("relu3", nn.ReLU()),
            ("fc2", nn.Linear(32, 10)));
        using (no_grad())
        {
            // Non-trivial running statistics, as after training.
            var bn = (BatchNorm2d)model.named_modules().Single(m => m.name == "bn1").module;
            bn.running_mean!.copy_(randn(8) * 0.1);
            bn.running_var!.copy_(rand(8) + 0.5);
        }

        model.eval();
        var path = Path.Combine(Dir, "cnn.onnx");
        SequentialExporter.Export(model, ["batch", 1, 28, 28], "cnn").Save(path);

        var input = rand(5, 1, 28, 28);
        using var expected = model.call(input);
        using var session = OrtHarness.Open(path);
        using var feed = OrtValue.CreateTensorValueFromMemory(input.data<float>().ToArray(), [5, 1, 28, 28]);
        using var runOptions = new RunOptions();
        using var results = session.Run(runOptions, ["input"], [feed], ["output"]);
        var actual = tensor(results[0].GetTensorDataAsSpan<float>().ToArray()).reshape(5, 10);
        var relative = (actual - expected).abs().max().item<float>() / expected.abs().max().item<float>();
        output.WriteLine($"relative max difference {relative:E2}");
        Assert.True(relative <= 1e-5, $"relative max difference {relative:E2}");
        Assert.Equal(["batch", "10"], session.OutputMetadata["output"].SymbolicDimensions.Zip(session.OutputMetadata["output"].Dimensions, (s, d) => s.Length > 0 ? s : d.ToString()));
    }

    [Fact]
    public void A_layer_it_cannot_export_is_named()
    {
        TorchRuntime.EnsureLoaded();
        var model = nn.Sequential(("fc", nn.Linear(4, 4)), ("act", nn.GELU()));
        var error = Assert.Throws<CompressException>(() => SequentialExporter.Export(model, ["batch", 4]));
        Assert.Equal(DiagnosticCodes.ExportUnsupported, error.Diagnostic.Code);
        Assert.Contains("'act' (GELU)", error.Message);
    }
}
