using System.Buffers.Binary;
using System.IO.Compression;

namespace Compress.Core.Data;

/// <summary>Reads Fashion-MNIST's IDX files (gzip) as installed by Debian's dataset-fashion-mnist (70,000 real images).</summary>
public static class FashionMnist
{
    public static string Folder => Environment.GetEnvironmentVariable("COMPRESS_FASHION_MNIST") ?? "/usr/share/datasets/fashion-mnist";

    public const string TrainImages = "train-images-idx3-ubyte.gz";
    public const string TrainLabels = "train-labels-idx1-ubyte.gz";
    public const string TestImages = "t10k-images-idx3-ubyte.gz";
    public const string TestLabels = "t10k-labels-idx1-ubyte.gz";

    /// <summary>Images as floats normalised to [0, 1], row-major [count, 784].</summary>
    public static float[] Images(string file, out int count)
    {
        var bytes = ReadGzip(file);
        if (BinaryPrimitives.ReadInt32BigEndian(bytes) != 0x803)
        {
            throw new InvalidDataException($"{file}: not an IDX image file");
        }

        count = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(4));
        var pixels = bytes.AsSpan(16, count * 784);
        var result = new float[pixels.Length];
        for (var i = 0; i < pixels.Length; i++)
        {
            result[i] = pixels[i] / 255f;
        }

        return result;
    }

    public static byte[] Labels(string file)
    {
        var bytes = ReadGzip(file);
        if (BinaryPrimitives.ReadInt32BigEndian(bytes) != 0x801)
        {
            throw new InvalidDataException($"{file}: not an IDX label file");
        }

        return bytes[8..];
    }

    private static byte[] ReadGzip(string file)
    {
        var path = Path.Combine(Folder, file);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"{path} not found: install Debian's dataset-fashion-mnist (./build.sh setup)");
        }

        using var gzip = new GZipStream(File.OpenRead(path), CompressionMode.Decompress);
        using var memory = new MemoryStream();
        gzip.CopyTo(memory);
        return memory.ToArray();
    }

    /// <summary>
    /// Writes a split as .npz: <c>input</c> (float32 pixels in [0, 1], shaped <c>[n, …sampleShape]</c>) and
    /// <c>labels</c> (int64). The first <paramref name="count"/> images, or all; pixels optionally normalised as
    /// (p − <paramref name="mean"/>) / <paramref name="std"/>.
    /// </summary>
    public static void WriteNpz(string path, bool test, long[] sampleShape, int? count = null, float mean = 0, float std = 1)
    {
        var images = Images(test ? TestImages : TrainImages, out var total);
        var labels = Labels(test ? TestLabels : TrainLabels);
        var n = Math.Min(count ?? total, total);
        var pixels = images.AsSpan(0, n * 784).ToArray();
        if (mean != 0 || std != 1)
        {
            for (var i = 0; i < pixels.Length; i++)
            {
                pixels[i] = (pixels[i] - mean) / std;
            }
        }

        ArrayFile.Write(path,
            NpyArray.Create("input", pixels, [n, .. sampleShape]),
            NpyArray.Create("labels", labels.Take(n).Select(l => (long)l).ToArray(), n));
    }
}
