using Compress.Core.Data;
using Compress.Core.Torch;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Cli.Tests;

/// <summary><c>compress eval</c> takes every format <c>compress run</c> takes.</summary>
public sealed class EvalCommandTests : CliTest
{
    [Fact]
    public void A_torchscript_artifact_is_evaluated_against_its_original()
    {
        var original = Compress.Tests.Shared.Repository.Path("tests", "fixtures", "torchscript", "ts_mlp.pt");
        var data = Path.Combine(Dir, "test.npz");
        FashionMnist.WriteNpz(data, test: true, [1, 28, 28], 500, 0.2860f, 0.3530f);
        var spec = Path.Combine(Dir, "spec.json");
        File.WriteAllText(spec, """{ "steps": [ { "quantize": { "weights": "int8", "activations": "none" } } ] }""");
        var compressed = Path.Combine(Dir, "mlp.int8.pt");
        var (code, _, stderr) = Run("run", original, "--spec", spec, "--output", compressed);
        Assert.True(code == 0, stderr);

        (code, var stdout, stderr) = Run("eval", compressed, "--data", data, "--labels", "labels", "--reference", original);
        Assert.True(code == 0, stderr);
        Assert.Contains("output 'output' (class scores, judged):", stdout);
        Assert.Matches(@"accuracy: 0\.8\d{3} \(reference 0\.8\d{3}\)", stdout);
        Assert.Matches(@"agreement: 0\.9\d{3} of 500 predictions", stdout);

        (code, stdout, _) = Run("eval", compressed, "--data", data, "--reference", original, "--metric", "cosine");
        Assert.Equal(0, code);
        Assert.Contains("(features, judged)", stdout);
        Assert.True(System.Text.RegularExpressions.Regex.IsMatch(stdout, @"cosine: mean (0\.99\d\d|1\.0000), 1st percentile (0\.9\d{3}|1\.0000)"), stdout);
    }

    [Fact]
    public void A_state_dict_is_compared_tensor_by_tensor_without_data()
    {
        TorchRuntime.EnsureLoaded();
        var original = Path.Combine(Dir, "mlp.dat");
        manual_seed(3);
        nn.Sequential(("fc1", nn.Linear(64, 32)), ("relu", nn.ReLU()), ("fc2", nn.Linear(32, 10))).save(original);
        var spec = Path.Combine(Dir, "spec.json");
        File.WriteAllText(spec, """{ "steps": [ { "prune": { "sparsity": 0.5, "scope": "layer" } } ] }""");
        var compressed = Path.Combine(Dir, "mlp.pruned.dat");
        var (code, _, stderr) = Run("run", original, "--spec", spec, "--output", compressed);
        Assert.True(code == 0, stderr);

        (code, var stdout, stderr) = Run("eval", compressed, "--reference", original);
        Assert.True(code == 0, stderr);
        Assert.Matches(@"fc1\.weight: 2,048 parameters, sparsity 50\.0 ?%, relative error \d\.\d\dE-00\d", stdout);
        Assert.Matches(@"fc1\.bias: 32 parameters, sparsity 0\.0 ?%, relative error 0\.00E\+000", stdout);

        (code, _, stderr) = Run("eval", Mlp);
        Assert.Equal(1, code);
        Assert.Contains("error CMP0009: --data is required to evaluate an ONNX model", stderr);
    }
}
