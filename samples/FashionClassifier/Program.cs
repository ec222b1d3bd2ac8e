// Classifies the 10,000 Fashion-MNIST test images with the model that `dotnet build` compressed, through the typed
// wrapper the build generated (FashionClassifierModel), and prints what the build measured (from the report next
// to the model) beside what this run measures. The model ships packed (fashion_mlp.cpack): Load expands it in
// memory to ONNX and opens the ONNX Runtime session from the bytes.
using System.IO.Compression;
using System.Text.Json;
using Compress.Runtime;
using Compress.Runtime.Packing;
using FashionClassifier;

var modelPath = Path.Combine(AppContext.BaseDirectory, FashionClassifierModel.ArtifactPath);
var reportPath = Path.Combine(AppContext.BaseDirectory, "fashion_mlp.compress-report.json");
var dataset = args.Length > 0 ? args[0] : "/usr/share/datasets/fashion-mnist";
string[] classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

var (pixels, count) = ReadImages(Path.Combine(dataset, "t10k-images-idx3-ubyte.gz"));
var labels = ReadLabels(Path.Combine(dataset, "t10k-labels-idx1-ubyte.gz"));

using var model = FashionClassifierModel.Load(new ModelOptions { IntraOpThreads = 1 });
var correct = 0;
const int batch = 500;
var watch = System.Diagnostics.Stopwatch.StartNew();
for (var start = 0; start < count; start += batch)
{
    var n = Math.Min(batch, count - start);
    var logits = model.Run(pixels.AsMemory(start * 784, n * 784)).Logits; // batch size inferred from the length
    for (var i = 0; i < n; i++)
    {
        correct += ArgMax(logits.Row(i)) == labels[start + i] ? 1 : 0;
    }
}

watch.Stop();
var first = model.Run(pixels.AsMemory(0, 784), batch: 1).Logits;
Console.WriteLine($"first test image: {classes[ArgMax(first.Row(0))]} (label: {classes[labels[0]]})");
Console.WriteLine($"model: {modelPath} ({new FileInfo(modelPath).Length:N0} bytes{(PackedModel.IsPackedFile(modelPath) ? ", packed: expanded in memory by Compress.Runtime" : "")})");
Console.WriteLine($"accuracy on {count:N0} test images: {correct / (double)count:P2} ({watch.Elapsed.TotalMilliseconds:0} ms, 1 thread)");
if (File.Exists(reportPath))
{
    using var report = JsonDocument.Parse(File.ReadAllText(reportPath));
    var size = report.RootElement.GetProperty("size");
    var metrics = report.RootElement.GetProperty("metrics");
    Console.WriteLine($"build report: {size.GetProperty("originalBytes").GetInt64():N0} -> {size.GetProperty("compressedBytes").GetInt64():N0} bytes " +
        $"({size.GetProperty("ratio").GetDouble():0.000}x), accuracy {metrics.GetProperty("originalAccuracy").GetDouble():P2} -> " +
        $"{metrics.GetProperty("compressedAccuracy").GetDouble():P2}");
}

static int ArgMax(ReadOnlySpan<float> row)
{
    var best = 0;
    for (var c = 1; c < row.Length; c++)
    {
        best = row[c] > row[best] ? c : best;
    }

    return best;
}

static (float[] Pixels, int Count) ReadImages(string path)
{
    var bytes = Gunzip(path);
    var count = BigEndian(bytes, 4);
    var pixels = new float[count * 784];
    for (var i = 0; i < pixels.Length; i++)
    {
        pixels[i] = bytes[16 + i] / 255f;
    }

    return (pixels, count);
}

static byte[] ReadLabels(string path) => Gunzip(path)[8..];

static byte[] Gunzip(string path)
{
    if (!File.Exists(path))
    {
        throw new FileNotFoundException($"Fashion-MNIST not found at {path}: install Debian's dataset-fashion-mnist, or pass the folder that holds t10k-*.gz");
    }

    using var input = new GZipStream(File.OpenRead(path), CompressionMode.Decompress);
    using var memory = new MemoryStream();
    input.CopyTo(memory);
    return memory.ToArray();
}

static int BigEndian(byte[] bytes, int offset) => (bytes[offset] << 24) | (bytes[offset + 1] << 16) | (bytes[offset + 2] << 8) | bytes[offset + 3];
