// Classifies the 10,000 Fashion-MNIST test images with the model that `dotnet build` compressed, and prints what
// the build measured (from the report next to the model) beside what this run measures.
using System.IO.Compression;
using System.Text.Json;
using Microsoft.ML.OnnxRuntime;

var modelPath = Path.Combine(AppContext.BaseDirectory, "fashion_mlp.onnx");
var reportPath = Path.Combine(AppContext.BaseDirectory, "fashion_mlp.compress-report.json");
var dataset = args.Length > 0 ? args[0] : "/usr/share/datasets/fashion-mnist";
string[] classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

var (pixels, count) = ReadImages(Path.Combine(dataset, "t10k-images-idx3-ubyte.gz"));
var labels = ReadLabels(Path.Combine(dataset, "t10k-labels-idx1-ubyte.gz"));

using var options = new SessionOptions { IntraOpNumThreads = 1 };
using var session = new InferenceSession(modelPath, options);
var correct = 0;
const int batch = 500;
var watch = System.Diagnostics.Stopwatch.StartNew();
for (var start = 0; start < count; start += batch)
{
    var n = Math.Min(batch, count - start);
    using var input = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, pixels.AsMemory(start * 784, n * 784), [n, 784]);
    using var outputs = session.Run(new RunOptions(), ["input"], [input], ["logits"]);
    var logits = outputs[0].GetTensorDataAsSpan<float>();
    for (var i = 0; i < n; i++)
    {
        var row = logits.Slice(i * 10, 10);
        var best = 0;
        for (var c = 1; c < 10; c++)
        {
            best = row[c] > row[best] ? c : best;
        }

        correct += best == labels[start + i] ? 1 : 0;
    }
}

watch.Stop();
var first = new float[784];
Array.Copy(pixels, first, 784);
using (var one = OrtValue.CreateTensorValueFromMemory(first, [1, 784]))
using (var result = session.Run(new RunOptions(), ["input"], [one], ["logits"]))
{
    var row = result[0].GetTensorDataAsSpan<float>().ToArray();
    var predicted = Array.IndexOf(row, row.Max());
    Console.WriteLine($"first test image: {classes[predicted]} (label: {classes[labels[0]]})");
}

Console.WriteLine($"model: {modelPath} ({new FileInfo(modelPath).Length:N0} bytes)");
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
