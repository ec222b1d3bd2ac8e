using Compress.Core.Onnx;
using Compress.Core.Tests.TestSupport;
using Xunit.Abstractions;

namespace Compress.Core.Tests.RealModels;

/// <summary>
/// Attention heads removed from the trained sentence encoder (4 layers, 4 heads of 32): <c>"pattern": "channel"</c> on
/// the q/k/v projections, one share of the heads in every layer, chosen by the OBS cost at the output projection and that
/// projection refitted by least squares; judged by the pooled sentence embeddings as <see cref="TextEncoderCompressionTests"/> does.
/// </summary>
public sealed class TextEncoderHeadPruningTests(ITestOutputHelper output) : TempDirectoryTest
{
    private static string Fixture(string name) => Path.Combine(TestData.RepoRoot, "tests", "fixtures", "text", name);

    private static string Spec(double sparsity) => $$"""
        { "data": { "calibration": { "path": {{SpecFiles.Quote(Fixture("calibration.npz"))}} },
                    "evaluation": { "path": {{SpecFiles.Quote(Fixture("evaluation.npz"))}} } },
          "steps": [ { "prune": { "method": "obs", "pattern": "channel", "scope": "layer", "sparsity": {{sparsity}},
                                  "include": [ "*/q/MatMul", "*/k/MatMul", "*/v/MatMul" ] } } ] }
        """;

    [Theory]
    [InlineData(0.25, 3, 0.998)]
    [InlineData(0.5, 2, 0.99)]
    public void Heads_go_from_every_layer_and_the_embeddings_hold(double sparsity, int kept, double minCosine)
    {
        var path = Path.Combine(Dir, "heads.onnx");
        var report = CompressionPipeline.Run(Fixture("text_encoder.onnx"), SpecFiles.Load(Dir, Spec(sparsity)), path, measureLatency: false);
        var (cosine, neighbours) = TextEncoderCompressionTests.Embeddings(path);
        var stages = report.Stages!;
        output.WriteLine($"heads {sparsity:P0}: {report.Size.CompressedBytes:N0} bytes ({report.Size.Ratio:0.000}x), multiply-adds {stages[0].MultiplyAdds:N0} -> {stages[^1].MultiplyAdds:N0}, pooled cosine {cosine:0.0000}, nearest neighbour kept {neighbours:P1}");
        foreach (var note in report.Notes.Where(n => n.Contains("channel", StringComparison.Ordinal)))
        {
            output.WriteLine(note);
        }

        Assert.Contains(report.Notes, n => n.Contains($"4 attention blocks, {16 - 4 * kept} of 16 heads removed", StringComparison.Ordinal));
        var model = OnnxModel.Load(path);
        for (var layer = 0; layer < 4; layer++)
        {
            foreach (var projection in new[] { "q", "k", "v" })
            {
                var weight = model.Graph.GetInitializer(model.Graph.Nodes.Single(n => n.Name == $"/layers.{layer}/{projection}/MatMul").Input[1])!;
                Assert.Equal([128L, kept * 32L], weight.Dims.ToArray());
            }

            var o = model.Graph.GetInitializer(model.Graph.Nodes.Single(n => n.Name == $"/layers.{layer}/o/MatMul").Input[1])!;
            Assert.Equal([kept * 32L, 128L], o.Dims.ToArray());
        }

        Assert.True(stages[^1].MultiplyAdds < stages[0].MultiplyAdds, "fewer multiply-adds");
        Assert.True(cosine >= minCosine, $"pooled cosine {cosine:0.0000}");
    }

    [Fact]
    public void The_same_spec_writes_the_same_bytes_twice()
    {
        var first = Path.Combine(Dir, "first.onnx");
        var second = Path.Combine(Dir, "second.onnx");
        CompressionPipeline.Run(Fixture("text_encoder.onnx"), SpecFiles.Load(Dir, Spec(0.5)), first, measureLatency: false);
        CompressionPipeline.Run(Fixture("text_encoder.onnx"), SpecFiles.Load(Dir, Spec(0.5)), second, measureLatency: false);
        Assert.Equal(File.ReadAllBytes(first), File.ReadAllBytes(second));
    }
}
