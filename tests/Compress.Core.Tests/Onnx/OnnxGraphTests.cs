using Compress.Core.Calibration;
using Compress.Core.Data;
using Compress.Core.Diagnostics;
using Compress.Core.Evaluation;
using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Tests.TestSupport;
using Microsoft.ML.OnnxRuntime;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Core.Tests.Onnx;

public sealed class OnnxGraphTests
{
    [Fact]
    public void Producers_and_consumers_are_indexed()
    {
        var graph = Models.Dense().Graph;
        Assert.Equal("matmul", graph.GetProducer("xw")!.Name);
        Assert.Null(graph.GetProducer("x"));
        Assert.Null(graph.GetProducer("W"));
        Assert.Equal(["matmul"], graph.GetConsumers("W").Select(n => n.Name));
        Assert.Equal(["add"], graph.GetConsumers("xw").Select(n => n.Name));
        Assert.Empty(graph.GetConsumers("y"));
        Assert.True(graph.IsGraphOutput("y"));
        Assert.Equal(["x"], graph.InputNames);
        Assert.NotNull(graph.GetInitializer("b"));
    }

    [Fact]
    public void Topological_order_fixes_a_shuffled_graph_deterministically()
    {
        var model = Models.Dense();
        var nodes = model.Graph.Nodes.Reverse().ToList();
        model.Graph.Proto.Node.Clear();
        model.Graph.Proto.Node.Add(nodes);
        Assert.Equal(["matmul", "add", "relu"], model.Graph.TopologicalOrder().Select(n => n.Name));
        model.Graph.SortTopologically();
        Assert.Equal(["matmul", "add", "relu"], model.Graph.Nodes.Select(n => n.Name));
    }

    [Fact]
    public void A_cycle_is_CMP0007_naming_a_node()
    {
        var model = new GraphBuilder("cycle")
            .Input("x", DataType.Float, 1)
            .Node("Add", ["x", "b"], ["a"], "first")
            .Node("Relu", ["a"], ["b"], "second")
            .Output("b", DataType.Float, 1)
            .Build();
        var e = Assert.Throws<CompressException>(() => model.Graph.TopologicalOrder());
        Assert.Equal(DiagnosticCodes.GraphInvalid, e.Diagnostic.Code);
        Assert.Contains("first", e.Message);
    }

    [Fact]
    public void Inserting_and_replacing_nodes_keeps_the_model_runnable()
    {
        var model = Models.Dense();
        var graph = model.Graph;
        var relu = graph.GetProducer("y")!;

        // Replace Relu by Clip(0, +inf): same function, so outputs must match the original exactly.
        var min = graph.AddInitializer(OnnxTensors.Scalar(graph.UniqueName("clip_min"), 0f));
        graph.Replace(relu, new NodeProto { OpType = "Clip", Name = "clip", Input = { "z", min.Name }, Output = { "y" } });
        Assert.Equal("clip", graph.GetProducer("y")!.Name);

        // Insert Identity between MatMul and Add.
        var matmul = graph.GetProducer("xw")!;
        matmul.Output[0] = "xw_raw";
        graph.InsertAfter(matmul, new NodeProto { OpType = "Identity", Name = "id", Input = { "xw_raw" }, Output = { "xw" } });
        Assert.Equal(["matmul", "id", "add", "clip"], graph.Nodes.Select(n => n.Name));
        Assert.Equal(["id"], graph.GetConsumers("xw_raw").Select(n => n.Name));

        var dir = TestData.NewTempDirectory();
        try
        {
            var edited = Path.Combine(dir, "edited.onnx");
            var original = Path.Combine(dir, "original.onnx");
            model.Save(edited);
            Models.Dense().Save(original);
            using var a = OrtHarness.Open(original);
            using var b = OrtHarness.Open(edited);
            using var x = OrtValue.CreateTensorValueFromMemory(Models.RandomInput(2 * 64, 3), [2, 64]);
            var feeds = new Dictionary<string, OrtValue> { ["x"] = x };
            Assert.True(OrtHarness.Run(a, feeds)[0].AsSpan().SequenceEqual(OrtHarness.Run(b, feeds)[0]));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Redirecting_consumers_and_removing_nodes()
    {
        var model = Models.Dense();
        var graph = model.Graph;
        graph.RedirectConsumers("z", "xw"); // bypass the Add
        graph.Remove(graph.GetProducer("z")!);
        graph.RemoveInitializer("b");
        Assert.Equal(["matmul", "relu"], graph.Nodes.Select(n => n.Name));
        Assert.Equal(["relu"], graph.GetConsumers("xw").Select(n => n.Name));
        Assert.Null(graph.GetInitializer("b"));
    }

    [Fact]
    public void Unread_chains_and_the_initializers_only_they_read_are_removed_in_order()
    {
        // y = relu(x); a chain W → Cast → Mul(·, s) → Neg that nothing reads, stored out of order, one of its constants
        // (s) also read by a live node; u is an initializer nothing read before.
        var model = new GraphBuilder("dead")
            .Input("x", DataType.Float, 2)
            .Initializer("W", [1f, 2f], 2)
            .Initializer("s", [3f], 1)
            .Initializer("u", [4f], 1)
            .Node("Neg", ["m"], ["n"], "neg")
            .Node("Cast", ["W"], ["c"], "cast", "", new AttributeProto { Name = "to", Type = AttributeProto.Types.AttributeType.Int, I = (long)DataType.Float })
            .Node("Mul", ["c", "s"], ["m"], "mul")
            .Node("Mul", ["x", "s"], ["xs"], "live_mul")
            .Node("Relu", ["xs"], ["y"], "relu")
            .Output("y", DataType.Float, 2)
            .Build();
        var graph = model.Graph;
        Assert.Equal(3, graph.RemoveUnread());
        Assert.Equal(["live_mul", "relu"], graph.Nodes.Select(n => n.Name));
        Assert.Equal(["s", "u"], graph.Proto.Initializer.Select(t => t.Name));
        Assert.Equal(["live_mul"], graph.GetConsumers("s").Select(n => n.Name));
        Assert.Equal(0, graph.RemoveUnread());
    }

    [Fact]
    public void A_part_computes_an_intermediate_value_as_the_whole_model_does()
    {
        // y = relu(x·W + b): the part for xw is the MatMul alone, with W (and W listed as an input, as older IR versions
        // write initializers) but not b, and every graph input kept.
        var model = Models.Dense();
        model.Graph.Proto.Input.Add(GraphBuilder.ValueInfo("W", DataType.Float, 64, 32));
        var part = model.Part(["xw"]);
        Assert.Equal(["matmul"], part.Graph.Nodes.Select(n => n.Name));
        Assert.Equal(["W"], part.Graph.Proto.Initializer.Select(t => t.Name));
        Assert.Equal(["x", "W"], part.Graph.Proto.Input.Select(i => i.Name));
        Assert.Equal(["xw"], part.Graph.Proto.Output.Select(o => o.Name));
        Assert.Equal(3, model.Graph.Nodes.Count); // the model is left as it was
        Assert.Equal(["y"], model.Graph.Proto.Output.Select(o => o.Name));

        var data = CalibrationSet.Synthesized(new Dictionary<string, NpyArray> { ["x"] = NpyArray.Create("x", Models.RandomInput(4 * 64, 3), [4, 64]) }, 4, "seeded");
        using var whole = OrtModelRunner.Exposing(model, ["xw"]);
        using var computing = OrtModelRunner.Computing(model, ["xw"]);
        Assert.Equal(["xw"], computing.OutputNames);
        using var expected = whole.RunBatch(data, 0, 4, ["xw"]);
        using var actual = computing.RunBatch(data, 0, 4, ["xw"]);
        Assert.Equal(expected[0].GetTensorDataAsSpan<float>().ToArray(), actual[0].GetTensorDataAsSpan<float>().ToArray());
    }

    [Fact]
    public void Names_are_unique_and_initializer_names_cannot_collide()
    {
        var graph = Models.Dense().Graph;
        Assert.Equal("W_1", graph.UniqueName("W"));
        Assert.Equal("fresh", graph.UniqueName("fresh"));
        Assert.Throws<ArgumentException>(() => graph.AddInitializer(OnnxTensors.Scalar("xw", 1f)));
        Assert.Throws<ArgumentException>(() => graph.AddInitializer(OnnxTensors.Scalar("W", 1f)));
    }

    [Fact]
    public void Opset_imports_are_raised_never_lowered()
    {
        var model = Models.Dense();
        Assert.Equal(17, model.GetOpsetVersion(""));
        Assert.Equal(17, model.GetOpsetVersion("ai.onnx"));
        model.RequireOpset("", 13);
        Assert.Equal(17, model.GetOpsetVersion(""));
        model.RequireOpset("ai.onnx", 21);
        Assert.Equal(21, model.GetOpsetVersion(""));
        Assert.Null(model.GetOpsetVersion("com.microsoft"));
        model.RequireOpset("com.microsoft", 1);
        Assert.Equal(1, model.GetOpsetVersion("com.microsoft"));
        Assert.Equal(2, model.Proto.OpsetImport.Count);
    }

    [Fact]
    public void Subgraph_reads_from_the_outer_scope_count_as_consumers()
    {
        var body = new GraphProto { Name = "then" };
        body.Node.Add(new NodeProto { OpType = "Identity", Input = { "outer" }, Output = { "inner" } });
        body.Output.Add(GraphBuilder.ValueInfo("inner", DataType.Float, 1));
        var model = new GraphBuilder("if")
            .Input("cond", DataType.Bool)
            .Input("x", DataType.Float, 1)
            .Node("Relu", ["x"], ["outer"], "relu")
            .Node("If", ["cond"], ["y"], "branch", "", new AttributeProto { Name = "then_branch", Type = AttributeProto.Types.AttributeType.Graph, G = body },
                new AttributeProto { Name = "else_branch", Type = AttributeProto.Types.AttributeType.Graph, G = body.Clone() })
            .Output("y", DataType.Float, 1)
            .Build();
        Assert.Equal(["branch"], model.Graph.GetConsumers("outer").Select(n => n.Name));
    }
}
