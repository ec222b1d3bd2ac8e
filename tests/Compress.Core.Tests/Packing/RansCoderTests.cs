using Compress.Runtime.Packing;

namespace Compress.Core.Tests.Packing;

public sealed class RansCoderTests
{
    [Theory]
    [InlineData(17, 0.9, 1000)]
    [InlineData(33, 0.5, 10_000)]
    [InlineData(257, 0.0, 5000)]
    [InlineData(2, 0.99, 100_000)]
    [InlineData(1, 1.0, 300)]
    [InlineData(9, 0.7, 0)]
    public void Round_trips_and_stays_near_the_order_0_entropy(int alphabet, double zeros, int count)
    {
        var random = new Random(alphabet * 31 + count);
        var symbols = new ushort[count];
        for (var i = 0; i < count; i++)
        {
            // Pruned weights (0) with probability `zeros`, the rest peaked around the middle of the codebook.
            symbols[i] = alphabet == 1 || random.NextDouble() < zeros ? (ushort)0
                : (ushort)Math.Clamp(1 + (int)((alphabet - 1) / 2.0 + (random.NextDouble() - 0.5) * (alphabet - 1) * random.NextDouble()), 1, alphabet - 1);
        }

        var writer = new PackedWriter();
        RansCoder.Encode(symbols, alphabet, writer);
        var decoded = new ushort[count];
        var reader = new PackedReader(writer.Written, "test");
        RansCoder.Decode(ref reader, alphabet, decoded);
        Assert.Equal(symbols, decoded);
        Assert.Equal(0, reader.Remaining);

        var entropyBytes = Entropy(symbols, alphabet) * count / 8;
        var tableBytes = 2 * alphabet * 2 + 8;
        Assert.True(writer.Length <= (entropyBytes * 1.01) + tableBytes, $"{writer.Length} bytes for an order-0 entropy of {entropyBytes:0} bytes");
    }

    [Fact]
    public void A_stream_that_does_not_end_with_its_symbols_is_refused()
    {
        var symbols = Enumerable.Range(0, 4000).Select(i => (ushort)(i % 7 == 0 ? 0 : 1 + (i * 7919 % 15))).ToArray();
        var writer = new PackedWriter();
        RansCoder.Encode(symbols, 16, writer);
        var reader = new PackedReader(writer.Written, "the test stream");
        var error = Assert.Throws<PackedModelException>(() =>
        {
            var r = new PackedReader(writer.Written, "the test stream");
            RansCoder.Decode(ref r, 16, new ushort[symbols.Length + 1]);
        });
        Assert.Contains("the test stream is corrupt", error.Message, StringComparison.Ordinal);
    }

    private static double Entropy(ushort[] symbols, int alphabet)
    {
        if (symbols.Length == 0)
        {
            return 0;
        }

        var counts = new double[alphabet];
        foreach (var s in symbols)
        {
            counts[s]++;
        }

        return -counts.Where(c => c > 0).Sum(c => c / symbols.Length * Math.Log2(c / symbols.Length));
    }
}
