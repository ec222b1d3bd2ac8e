using System.Diagnostics;
using Compress.Core.Diagnostics;
using Compress.Core.Reports;
using Compress.Core.StateDicts;
using Compress.Core.Tests.TestSupport;
using Compress.Core.Torch;
using Compress.Runtime.TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Compress.Core.Tests.StateDicts;

/// <summary>
/// <c>finetune</c> on TorchScript modules (tests/fixtures/torchscript), through the scripted module's own autograd:
/// accuracy recovered on the 10,000 Fashion-MNIST test images, masks held, grids kept, the same bytes twice; and the
/// refusal for a TorchSharp state dict, which has no code to train.
/// </summary>
public sealed class TorchScriptFinetuneTests(ITestOutputHelper output) : TempDirectoryTest
{
    private const string Prune = """{ "prune": { "sparsity": 0.9 } }""";
    private const string Finetune = """{ "finetune": { "steps": 150, "batchSize": 128 } }""";

    [Fact]
    public void Finetune_recovers_a_pruned_module_with_its_masks_held_and_the_same_bytes_twice()
    {
        var without = Compress(Prune, "without.pt");
        var clock = Stopwatch.StartNew();
        var with = Compress($"{Prune}, {Finetune}", Path.Combine("a", "with.pt"));
        var seconds = clock.Elapsed.TotalSeconds;
        var again = Compress($"{Prune}, {Finetune}", Path.Combine("b", "with.pt")); // the archive names its root folder after the file
        output.WriteLine($"ts_mlp at 90%: {without.Metrics!.CompressedAccuracy:P2} without finetune, {with.Metrics!.CompressedAccuracy:P2} with ({seconds:0.0} s); dense {with.Metrics.OriginalAccuracy:P2}");
        output.WriteLine(string.Join("\n", with.Notes));

        Assert.True(with.Metrics.CompressedAccuracy > without.Metrics.CompressedAccuracy + 0.05,
            $"{without.Metrics.CompressedAccuracy:P2} → {with.Metrics.CompressedAccuracy:P2}");
        Assert.Contains(with.Notes, n => n.StartsWith("finetune: distilled the original model's 'output' (kl)", StringComparison.Ordinal));
        Assert.Equal(File.ReadAllBytes(with.Output), File.ReadAllBytes(again.Output));

        // The masks: exactly the weights the prune step zeroed are zero after training, and the others moved.
        using var pruned = TorchScriptModel.Load(without.Output);
        using var trained = TorchScriptModel.Load(with.Output);
        var before = pruned.Module.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, after) in trained.Module.named_parameters().Where(p => p.parameter.dim() >= 2))
        {
            Assert.True(after.eq(0).eq(before[name].eq(0)).all().item<bool>(), $"{name}: zeros moved");
            Assert.True(after.ne(before[name]).any().item<bool>(), $"{name} did not train");
        }
    }

    [Fact]
    public void Int8_weights_stay_on_their_grids()
    {
        const string steps = """{ "prune": { "sparsity": 0.5 } }, { "quantize": { "weights": "int8", "activations": "none" } }""";
        var without = Compress(steps, "without.pt");
        var with = Compress($$"""{{steps}}, { "finetune": { "steps": 60, "batchSize": 128 } }""", "with.pt");
        output.WriteLine($"ts_mlp 50% + int8: {without.Metrics!.CompressedAccuracy:P2} without finetune, {with.Metrics!.CompressedAccuracy:P2} with");

        using var reference = TorchScriptModel.Load(without.Output);
        using var model = TorchScriptModel.Load(with.Output);
        var before = reference.Module.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var moved = 0L;
        foreach (var (name, w) in model.Module.named_parameters().Where(p => p.parameter.dim() >= 2))
        {
            // On an int8 power-of-two grid per row: rounding onto it changes nothing; pruned weights still zero.
            Assert.True(TorchScriptCompressor.PowerOfTwoGrid(w, 8, 0).eq(w).all().item<bool>(), $"{name} left its int8 grid");
            Assert.True(w.eq(0).logical_or(before[name].ne(0)).all().item<bool>(), $"{name}: a pruned weight revived");
            Assert.True(w.eq(0).sum().item<long>() >= before[name].eq(0).sum().item<long>() * 0.99, $"{name}: zeros lost");
            moved += w.ne(before[name]).sum().item<long>();
        }

        Assert.True(moved > 0, "no weight moved on its grid");
        Assert.True(with.Metrics.CompressedAccuracy >= without.Metrics.CompressedAccuracy - 0.005);
    }

    /// <summary>A state dict holds weights, not the forward pass: 'finetune' is refused at its place with what to do.</summary>
    [Fact]
    public void Finetune_on_a_state_dict_is_refused_at_the_step()
    {
        TorchRuntime.EnsureLoaded();
        var path = Path.Combine(Dir, "model.dat");
        var module = TorchSharp.torch.nn.Sequential(("fc1", TorchSharp.torch.nn.Linear(784, 16)), ("fc2", TorchSharp.torch.nn.Linear(16, 10)));
        module.save(path);
        var spec = SpecFiles.Load(Dir, $$"""
            { "data": { "calibration": { "path": {{SpecFiles.Quote(FashionData.Normalized(test: false))}} } },
              "steps": [ { "prune": { "sparsity": 0.5 } },
                         { "finetune": { "steps": 10 } } ] }
            """);
        var error = Assert.Throws<CompressException>(() => StateDictCompressor.Run(path, spec, Path.Combine(Dir, "out.dat")));
        output.WriteLine(error.Message);
        Assert.Equal(global::Compress.Spec.SpecCodes.Inconsistent, error.Diagnostic.Code);
        Assert.Equal(3, error.Diagnostic.Line);
        Assert.Contains("holds only weights", error.Message);
        Assert.Contains("name your module class in the spec's 'module'", error.Message);
        Assert.Contains("TorchScript", error.Message);
        Assert.False(File.Exists(Path.Combine(Dir, "out.dat")));
    }

    private CompressionReport Compress(string steps, string outputName)
    {
        TorchRuntime.EnsureLoaded();
        var spec = SpecFiles.Load(Dir, $$"""
            { "data": { "calibration": { "path": {{SpecFiles.Quote(FashionData.Normalized(test: false))}} },
                        "evaluation": { "path": {{SpecFiles.Quote(FashionData.Normalized(test: true))}}, "labels": "labels" } },
              "steps": [ {{steps}} ], "constraints": { "minAgreement": 0 } }
            """);
        return TorchScriptCompressor.Run(FashionData.TorchScriptFixture("ts_mlp.pt"), spec, Path.Combine(Dir, outputName), output.WriteLine);
    }
}
