using Compress.Core.Data;
using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Passes.Graph;
using Compress.Core.Tests.TestSupport;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Xunit;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Core.Tests.Passes.Graph;

/// <summary>
/// The tidy every ONNX output gets: repeated constants stored once, ONNX Runtime's outputs bit for bit the same, the
/// same bytes from the same model, and nothing touched where nothing repeats or where a name must stay.
/// </summary>
public sealed class DuplicateConstantsTests : TempDirectoryTest
{
    private static readonly float[] Values = [1, 2, 3, 4, 5, 6];

    [Fact]
    public void Repeated_initializers_and_constant_nodes_are_stored_once_with_the_same_outputs()
    {
        var before = Path.Combine(Dir, "before.onnx");
        var model = Synthetic();
        model.Save(before);

        Assert.Equal(2, DuplicateConstants.Merge(model));
        var graph = model.Graph;
        // The shorter name stays; the graph input and the subgraph's outer-scope read keep theirs; the second Constant goes.
        Assert.Equal(["b", "fed", "inner_read", "other"], graph.Proto.Initializer.Select(t => t.Name).Order(StringComparer.Ordinal));
        Assert.Equal(["b", "b"], graph.Nodes.Where(n => n.OpType == "Add" && n.Name is "add_a" or "add_b").Select(n => n.Input[1]));
        Assert.Single(graph.Nodes, n => n.OpType == "Constant" && n.Output[0].StartsWith("k", StringComparison.Ordinal) && n.Output[0] != "k3");
        Assert.Equal("k1", graph.Nodes.Single(n => n.Name == "add_k2").Input[1]);
        Assert.DoesNotContain(graph.Proto.ValueInfo, v => v.Name is "a_long_name" or "k2");

        var after = Path.Combine(Dir, "after.onnx");
        model.Save(after);
        Assert.Equal(Run(before, SyntheticInputs()), Run(after, SyntheticInputs()));
        Assert.True(new FileInfo(after).Length < new FileInfo(before).Length);

        // Nothing repeats any more: a second tidy changes nothing, not a byte.
        Assert.Equal(0, DuplicateConstants.Merge(model));
        var again = Path.Combine(Dir, "again.onnx");
        model.Save(again);
        Assert.Equal(File.ReadAllBytes(after), File.ReadAllBytes(again));
    }

    [Fact]
    public void The_trained_encoders_shape_constants_are_shared_and_its_outputs_stay_bit_for_bit()
    {
        var fixture = Path.Combine(TestData.RepoRoot, "tests", "fixtures", "text", "text_encoder.onnx");
        OnnxModel Prepared()
        {
            var model = OnnxModel.Load(fixture);
            GraphPreparation.Apply(model, []);
            return model;
        }

        var before = Path.Combine(Dir, "before.onnx");
        var untidy = Prepared();
        untidy.Save(before);
        var initializers = untidy.Proto.Graph.Initializer.Count;

        var paths = new List<string>();
        foreach (var name in new[] { "first.onnx", "second.onnx" })
        {
            var model = Prepared();
            Assert.Equal(116, DuplicateConstants.Merge(model)); // 115 int64 shape constants of 12 values, and 5+4+4+4 float scalars of 4
            Assert.Equal(initializers - 116, model.Proto.Graph.Initializer.Count);
            paths.Add(Path.Combine(Dir, name));
            model.Save(paths[^1]);
        }

        Assert.Equal(File.ReadAllBytes(paths[0]), File.ReadAllBytes(paths[1]));
        var saved = new FileInfo(before).Length - new FileInfo(paths[0]).Length;
        Assert.InRange(saved, 4_500, 6_000);

        var arrays = ArrayFile.Read(Path.Combine(TestData.RepoRoot, "tests", "fixtures", "text", "evaluation.npz"));
        long[] shape = [.. arrays["input_ids"].Shape];
        Dictionary<string, OrtValue> Inputs() => new()
        {
            ["input_ids"] = OrtValue.CreateTensorValueFromMemory(arrays["input_ids"].ToInt64(), shape),
            ["attention_mask"] = OrtValue.CreateTensorValueFromMemory(arrays["attention_mask"].ToInt64(), shape),
        };
        Assert.Equal(Run(before, Inputs()), Run(paths[0], Inputs()));
    }

    [Fact]
    public void A_model_without_repeats_is_left_as_it_was()
    {
        var model = OnnxModel.Load(Path.Combine(TestData.RepoRoot, "models", "fashion_mlp.onnx"));
        var bytes = model.Proto.ToByteArray();
        Assert.Equal(0, DuplicateConstants.Merge(model));
        Assert.Equal(bytes, model.Proto.ToByteArray());
    }

    /// <summary>
    /// x + a_long_name + b + fed + k1 + k2 (+ inner_read inside an If) + other, where a_long_name, b, fed (also a graph
    /// input) and inner_read hold the same six values, and the Constant nodes k1 and k2 the same tensor under two names.
    /// </summary>
    private static OnnxModel Synthetic()
    {
        TensorProto Same(string name) => OnnxTensors.Create(name, Values, 2, 3);
        AttributeProto Constant(string tensorName, float scale) =>
            OnnxAttribute.Tensor("value", OnnxTensors.Create(tensorName, Values.Select(v => v * scale).ToArray(), 2, 3));

        var then = new GraphProto { Name = "then" };
        then.Node.Add(new NodeProto { OpType = "Add", Input = { "s6", "inner_read" }, Output = { "then_out" } });
        then.Output.Add(GraphBuilder.ValueInfo("then_out", DataType.Float, 2, 3));
        var otherwise = new GraphProto { Name = "else" };
        otherwise.Node.Add(new NodeProto { OpType = "Identity", Input = { "s6" }, Output = { "else_out" } });
        otherwise.Output.Add(GraphBuilder.ValueInfo("else_out", DataType.Float, 2, 3));

        var model = new GraphBuilder("repeats").Opset("", 17)
            .Input("x", DataType.Float, 2, 3)
            .Input("cond", DataType.Bool)
            .Input("fed", DataType.Float, 2, 3)
            .Initializer(Same("a_long_name"))
            .Initializer(Same("b"))
            .Initializer(Same("fed"))
            .Initializer(Same("inner_read"))
            .Initializer(OnnxTensors.Create("other", Values.Select(v => -v).ToArray(), 2, 3))
            .Node("Constant", [], ["k1"], "const_1", "", Constant("t1", 1))
            .Node("Constant", [], ["k2"], "const_2", "", Constant("t2", 1))
            .Node("Constant", [], ["k3"], "const_3", "", Constant("t3", 2))
            .Node("Add", ["x", "a_long_name"], ["s1"], "add_a")
            .Node("Add", ["s1", "b"], ["s2"], "add_b")
            .Node("Add", ["s2", "fed"], ["s3"], "add_fed")
            .Node("Add", ["s3", "k1"], ["s4"], "add_k1")
            .Node("Add", ["s4", "k2"], ["s5"], "add_k2")
            .Node("Add", ["s5", "k3"], ["s6"], "add_k3")
            .Node("If", ["cond"], ["branch"], "branch", "",
                new AttributeProto { Name = "then_branch", Type = AttributeProto.Types.AttributeType.Graph, G = then },
                new AttributeProto { Name = "else_branch", Type = AttributeProto.Types.AttributeType.Graph, G = otherwise })
            .Node("Add", ["branch", "other"], ["y"], "add_other")
            .Output("y", DataType.Float, 2, 3)
            .Build();
        model.Graph.Proto.ValueInfo.Add(GraphBuilder.ValueInfo("a_long_name", DataType.Float, 2, 3));
        model.Graph.Proto.ValueInfo.Add(GraphBuilder.ValueInfo("k2", DataType.Float, 2, 3));
        return model;
    }

    private static Dictionary<string, OrtValue> SyntheticInputs() => new()
    {
        ["x"] = OrtValue.CreateTensorValueFromMemory(new float[] { 0.5f, -1, 2, 0, 3, -4 }, [2, 3]),
        ["cond"] = OrtValue.CreateTensorValueFromMemory(new[] { true }, []),
    };

    private static IReadOnlyList<byte[]> Run(string path, Dictionary<string, OrtValue> inputs)
    {
        using var session = OrtHarness.Open(path);
        try
        {
            return OrtHarness.Run(session, inputs);
        }
        finally
        {
            foreach (var value in inputs.Values)
            {
                value.Dispose();
            }
        }
    }
}
