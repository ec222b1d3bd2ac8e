using Compress.Core.Onnx;
using Compress.Spec;
using Compress.Spec.Methods;

namespace Compress.Core.Passes.Pruning.Channels;

/// <summary>
/// The channel counts a cut may keep, chosen for the kernels that will run the group (algorithms.md §14).
/// <list type="bullet">
/// <item><see cref="Float"/>: a group of a multiple of 8 channels (16 or more) keeps a multiple of 8, or below one block a
/// power of two. ONNX Runtime's float Conv runs in 8- or 16-channel NCHWc blocks, and a partial block is padded.</item>
/// <item><see cref="Int8Conv"/>: a group read or written by a Conv that a later static int8 step quantizes keeps a
/// multiple of 16, and never fewer than 16. ONNX Runtime's QLinearConv takes its fast symmetric ("indirect") int8
/// kernel only for 16 or more output channels and a multiple of 4 input channels (depthwise: a multiple of 16
/// channels); below that it falls back to im2col and a general int8 product. On ResNet-20 the 28×28 3×3 QLinearConv
/// took 23 µs at 8 channels and 16 µs at 16, so a group of 16 is better left whole than halved.</item>
/// </list>
/// </summary>
internal readonly record struct ChannelWidths(long Block, bool PowersOfTwoBelow)
{
    public static readonly ChannelWidths Float = new(8, true);

    public static readonly ChannelWidths Int8Conv = new(16, false);

    /// <summary>How many of <paramref name="channels"/> go when <paramref name="remove"/> were asked for, rounded to these widths.</summary>
    public long Round(long channels, long remove)
    {
        if (remove <= 0)
        {
            return remove;
        }

        var wanted = channels - remove;
        var blocks = (long)Math.Round(wanted / (double)Block, MidpointRounding.AwayFromZero) * Block; // the nearest multiple
        if (!PowersOfTwoBelow)
        {
            // Never below one block: a group narrower than that is already past the kernel's reach and is cut as asked.
            return channels < Block ? remove : channels - Math.Clamp(blocks, Block, channels);
        }

        if (channels % Block != 0 || channels < 2 * Block)
        {
            return remove;
        }

        var keep = wanted >= Block * 3 / 4
            ? Math.Max(Block, blocks)
            : 1L << (int)Math.Round(Math.Log2(Math.Max(wanted, 1)), MidpointRounding.AwayFromZero);
        return channels - keep;
    }

    /// <summary>
    /// <see cref="Int8Conv"/> when a static int8 quantize step after <paramref name="prune"/> in <paramref name="spec"/>
    /// selects a Conv that produces or reads the group's channels; <see cref="Float"/> otherwise.
    /// </summary>
    public static ChannelWidths For(CompressionSpec spec, SpecStep prune, ChannelGroup group)
    {
        var int8 = Int8StepsAfter(spec, prune);
        if (int8.Count == 0)
        {
            return Float;
        }

        var convs = group.Producers.Concat(group.Consumers.Select(c => c.Node)).Where(n => n.OpType == "Conv");
        return convs.Any(n => int8.Any(q => q.OpTypes.Contains(n.OpType) && WeightSelection.Matches(n, q))) ? Int8Conv : Float;
    }

    /// <summary>The static int8 quantize steps after <paramref name="prune"/> (a gradual prune's stage is found by its position in the file).</summary>
    private static List<QuantizeStep> Int8StepsAfter(CompressionSpec spec, SpecStep prune)
    {
        var at = spec.Steps.FindIndex(s => ReferenceEquals(s, prune));
        if (at < 0)
        {
            at = spec.Steps.FindIndex(s => s.Kind == prune.Kind && s.Line == prune.Line && s.Column == prune.Column);
        }

        return spec.Steps.Skip(at + 1).OfType<QuantizeStep>()
            .Where(q => q.Scheme == QuantizeSchemes.Static && q.Weights == "int8")
            .ToList();
    }
}
