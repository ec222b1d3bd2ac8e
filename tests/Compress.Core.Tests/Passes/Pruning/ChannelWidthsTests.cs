using Compress.Core.Onnx;
using Compress.Core.Passes.Pruning.Channels;
using Compress.Core.Tests.TestSupport;
using Compress.Spec;

namespace Compress.Core.Tests.Passes.Pruning;

/// <summary>
/// The channel counts a cut keeps (algorithms.md §14): multiples of 8 or a power of two below one block in float, and
/// before a static int8 step a multiple of 16, never fewer than 16, for a group a quantized Conv writes or reads.
/// </summary>
public sealed class ChannelWidthsTests : TempDirectoryTest
{
    [Theory]
    [InlineData(16, 8, 8)] // float: a whole block of 8 kept
    [InlineData(16, 12, 12)] // 4 kept: a power of two below one block
    [InlineData(32, 13, 16)] // 19 wanted: the nearest multiple of 8
    [InlineData(20, 10, 10)] // not a multiple of 8: cut as asked
    [InlineData(24, 12, 8)] // 12 wanted: the nearest multiple of 8 is 16
    [InlineData(8, 4, 4)] // one block: cut as asked
    public void Float_widths_keep_blocks_of_8_or_a_power_of_two(long channels, long asked, long removed)
    {
        Assert.Equal(removed, ChannelWidths.Float.Round(channels, asked));
    }

    [Theory]
    [InlineData(16, 8, 0)] // 8 would leave the fast int8 kernel: the group stays whole
    [InlineData(16, 12, 0)]
    [InlineData(32, 16, 16)]
    [InlineData(32, 28, 16)] // never fewer than 16
    [InlineData(64, 32, 32)]
    [InlineData(64, 27, 32)] // 37 wanted: the nearest multiple of 16 is 32
    [InlineData(64, 20, 16)] // 44 wanted: 48
    [InlineData(24, 12, 8)] // 12 wanted: 16
    [InlineData(8, 4, 4)] // narrower than the kernel takes anyway: cut as asked
    [InlineData(64, 0, 0)]
    public void Int8_conv_widths_keep_a_multiple_of_16_never_fewer(long channels, long asked, long removed)
    {
        Assert.Equal(removed, ChannelWidths.Int8Conv.Round(channels, asked));
    }

    /// <summary>The Fashion CNN's groups: conv1's (Conv → Conv), conv2's (Conv → Flatten → Gemm) and fc1's (Gemm → Gemm).</summary>
    [Theory]
    [InlineData("""{ "quantize": { "weights": "int8", "activations": "uint8" } }""", true)]
    [InlineData("""{ "quantize": { "weights": "int8", "activations": "int8" } }""", true)]
    [InlineData("""{ "quantize": { "weights": "int8", "activations": "dynamic" } }""", false)]
    [InlineData("""{ "quantize": { "weights": "int8" } }""", true)] // static int8 activations by default
    [InlineData("""{ "quantize": { "weights": "int8", "activations": "none" } }""", false)]
    [InlineData("""{ "quantize": { "weights": "fp16" } }""", false)]
    [InlineData("""{ "quantize": { "weights": "int8", "activations": "uint8", "exclude": ["conv*"] } }""", false)]
    [InlineData("""{ "quantize": { "weights": "int8", "activations": "uint8", "opTypes": ["Gemm"] } }""", false)]
    public void Int8_widths_hold_where_a_later_static_int8_step_quantizes_a_conv_of_the_group(string quantize, bool int8)
    {
        var groups = ChannelGroups.Find(OnnxModel.Load(FashionData.CnnModel).Graph);
        var spec = Spec($$"""{ "prune": { "method": "magnitude", "pattern": "channel", "sparsity": 0.5 } }, {{quantize}}""");
        var widths = groups.ToDictionary(g => OnnxGraph.Describe(g.Seed), g => ChannelWidths.For(spec, spec.Steps[0], g));
        Assert.Equal(int8 ? ChannelWidths.Int8Conv : ChannelWidths.Float, widths["conv1"]);
        Assert.Equal(int8 ? ChannelWidths.Int8Conv : ChannelWidths.Float, widths["conv2"]);
        Assert.Equal(ChannelWidths.Float, widths["fc1"]); // Gemms only: QGemm has no such limit
    }

    [Fact]
    public void A_quantize_step_before_the_prune_does_not_set_the_widths()
    {
        var groups = ChannelGroups.Find(OnnxModel.Load(FashionData.CnnModel).Graph);
        var spec = Spec("""{ "quantize": { "weights": "int8", "activations": "uint8" } }, { "prune": { "method": "magnitude", "pattern": "channel", "sparsity": 0.5 } }""");
        Assert.All(groups, g => Assert.Equal(ChannelWidths.Float, ChannelWidths.For(spec, spec.Steps[1], g)));
    }

    private CompressionSpec Spec(string steps) => SpecFiles.Load(Dir, $$"""
        {
          "data": { "calibration": { "path": {{SpecFiles.Quote(FashionData.Calibration(true))}}, "samples": 64 } },
          "steps": [ {{steps}} ]
        }
        """);
}
