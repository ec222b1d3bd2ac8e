using Compress.Core.Onnx;
using Compress.Core.Passes;
using Compress.Core.Passes.Graph;
using Compress.Core.Tests.TestSupport;
using Microsoft.ML.OnnxRuntime;
using Google.Protobuf;

namespace Compress.Core.Tests.Passes.Graph;

public sealed class SparseStorageTests : TempDirectoryTest
{
    [Theory]
    [InlineData(0.0, 17, "dense")]
    [InlineData(0.5, 17, "bitmask")]
    [InlineData(0.9, 17, "bitmask")]
    [InlineData(0.995, 17, "sparse")]
    [InlineData(0.5, 10, "bitmask")] // BitShift and CumSum need opset 11: the model is raised to it (nothing in it changes meaning)
    [InlineData(0.9, 10, "bitmask")]
    public void Pruned_weights_take_the_smallest_form_and_give_bit_identical_outputs(double sparsity, int opset, string expected)
    {
        var dense = Pruned(sparsity, opset);
        dense.Save(Path.Combine(Dir, "dense.onnx"));
        var stored = Pruned(sparsity, opset);
        var layers = new Dictionary<string, LayerRecord>();
        var converted = SparseStorage.Apply(stored, layers);
        stored.Save(Path.Combine(Dir, "stored.onnx"));

        var form = stored.Graph.GetInitializer("W") is not null ? "dense"
            : stored.Proto.Graph.SparseInitializer.Any(s => s.Values.Name == "W") ? "sparse" : "bitmask";
        Assert.Equal(expected, form);
        Assert.Equal(expected == "dense" ? 0 : 1, converted);
        var denseBytes = new FileInfo(Path.Combine(Dir, "dense.onnx")).Length;
        var storedBytes = new FileInfo(Path.Combine(Dir, "stored.onnx")).Length;
        if (expected == "dense")
        {
            Assert.Equal(denseBytes, storedBytes);
        }
        else
        {
            Assert.True(storedBytes < denseBytes, $"{storedBytes} B stored vs {denseBytes} B dense");
        }

        using var a = OrtHarness.Open(Path.Combine(Dir, "dense.onnx"));
        using var b = OrtHarness.Open(Path.Combine(Dir, "stored.onnx"));
        for (var seed = 0; seed < 3; seed++)
        {
            using var x = OrtValue.CreateTensorValueFromMemory(Models.RandomInput(4 * 64, seed), [4, 64]);
            var inputs = new Dictionary<string, OrtValue> { ["x"] = x };
            Assert.Equal(OrtHarness.Run(a, inputs), OrtHarness.Run(b, inputs));
        }
    }

    [Fact]
    public void Onnx_runtime_folds_the_bitmask_unpacking_away_at_load()
    {
        var model = Pruned(0.5, 17);
        SparseStorage.Apply(model, new Dictionary<string, LayerRecord>());
        var path = Path.Combine(Dir, "stored.onnx");
        model.Save(path);
        Assert.Contains(model.Graph.Nodes, n => n.OpType == "CumSum");

        var optimized = Path.Combine(Dir, "optimized.onnx");
        using (var options = new SessionOptions { OptimizedModelFilePath = optimized, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_BASIC })
        using (new InferenceSession(path, options))
        {
        }

        var ops = OnnxModel.Load(optimized).Graph.Nodes.Select(n => n.OpType).ToList();
        Assert.DoesNotContain("CumSum", ops);
        Assert.DoesNotContain("BitShift", ops);
        Assert.DoesNotContain("Gather", ops);
    }

    /// <summary>The Dense model (W is [64, 32]) with a seeded <paramref name="sparsity"/> share of W zeroed, at <paramref name="opset"/>.</summary>
    private static OnnxModel Pruned(double sparsity, int opset)
    {
        var model = Models.Dense(seed: 5);
        model.Proto.OpsetImport.Single(o => o.Domain == "").Version = opset;
        var w = model.Graph.GetInitializer("W")!;
        var values = w.RawData.ToByteArray();
        var floats = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(values.AsSpan());
        var random = new Random(11);
        var order = Enumerable.Range(0, floats.Length).OrderBy(_ => random.Next()).ToArray();
        foreach (var i in order.Take((int)Math.Round(sparsity * floats.Length)))
        {
            floats[i] = 0f;
        }

        w.RawData = ByteString.CopyFrom(values);
        return model;
    }
}
