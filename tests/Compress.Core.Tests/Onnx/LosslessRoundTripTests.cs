using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Tests.TestSupport;
using Google.Protobuf;

namespace Compress.Core.Tests.Onnx;

public sealed class LosslessRoundTripTests : TempDirectoryTest
{
    [Fact]
    public void Unknown_fields_and_explicit_defaults_survive_byte_for_byte()
    {
        var model = Models.Dense();
        var node = model.Graph.Nodes[0];
        node.Attribute.Add(OnnxAttribute.Int("axis", 0)); // explicitly 0: proto2 presence must keep it
        var known = model.Proto.ToByteArray();

        // Fields from a future ONNX version: a varint (field 99) on the model and a string (field 42) on a node.
        byte[] futureModelField = [0x98, 0x06, 0x2A];
        var nodeBytes = node.ToByteArray();
        byte[] futureNodeField = [0xD2, 0x02, 0x03, (byte)'n', (byte)'e', (byte)'w'];
        var graphWithFutureNode = new GraphProto(model.Proto.Graph);
        graphWithFutureNode.Node[0] = NodeProto.Parser.ParseFrom([.. nodeBytes, .. futureNodeField]);
        var withGraph = new ModelProto(model.Proto) { Graph = graphWithFutureNode };
        byte[] original = [.. withGraph.ToByteArray(), .. futureModelField];

        var source = Path.Combine(Dir, "future.onnx");
        File.WriteAllBytes(source, original);
        var written = Path.Combine(Dir, "written.onnx");
        var loaded = OnnxModel.Load(source);
        Assert.True(loaded.Proto.Graph.Node[0].Attribute.Single(a => a.Name == "axis").HasI);
        loaded.Save(written);

        Assert.Equal(original, File.ReadAllBytes(written));
        Assert.NotEqual(known.Length, original.Length);
    }
}
