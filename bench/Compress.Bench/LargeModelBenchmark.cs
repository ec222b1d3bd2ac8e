using System.Diagnostics;
using System.Globalization;
using Compress.Core.Onnx;
using Microsoft.ML.OnnxRuntime;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Bench;

/// <summary>
/// A synthetic model over protobuf's 2 GB limit: a chain of 4096×4096 MatMuls. Each phase runs in its own
/// process so its peak resident memory (VmHWM) is its own:
/// generate (built in memory, saved with the automatic external-data rule), read + write (to another folder),
/// and ONNX Runtime loading both files and comparing one inference.
/// </summary>
internal static class LargeModelBenchmark
{
    public const string ChildVerb = "__large-model-phase";
    private const int Side = 4096;

    public static int Run(string[] args)
    {
        var gigabytes = double.Parse(Option(args, "--gigabytes") ?? "2.2", CultureInfo.InvariantCulture);
        var root = Option(args, "--dir") ?? Path.Combine(Path.GetTempPath(), "compress-bench-large");
        if (Directory.Exists(root))
        {
            Directory.Delete(root, recursive: true);
        }

        Directory.CreateDirectory(root);
        var layers = (int)Math.Ceiling(gigabytes * 1e9 / (Side * (long)Side * 4));
        var source = Path.Combine(root, "source", "large.onnx");
        var copy = Path.Combine(root, "copy", "large.onnx");
        try
        {
            // A second model under the limit, all weights embedded: read + write then holds the weights once.
            var embeddedLayers = (int)(1.2e9 / (Side * (long)Side * 4));
            var embedded = Path.Combine(root, "embedded", "embedded.onnx");
            var rows = new List<string[]>
            {
                Child("generate", layers.ToString(CultureInfo.InvariantCulture), source),
                Child("roundtrip", source, copy),
                Child("ort", source, copy),
                Child("generate-embedded", embeddedLayers.ToString(CultureInfo.InvariantCulture), embedded),
                Child("roundtrip", embedded, Path.Combine(root, "embedded-copy", "embedded.onnx")),
            };
            var sizes = new[] { source, source, source, embedded, embedded }.Select(p => FolderBytes(Path.GetDirectoryName(p)!)).ToArray();
            var modelBytes = FolderBytes(Path.GetDirectoryName(source)!);
            Console.WriteLine();
            Console.WriteLine($"synthetic model: {layers} MatMul layers of {Side}x{Side} float32, {modelBytes / 1e9:0.000} GB on disk (model + external data)");
            Console.WriteLine($"embedded model: {embeddedLayers} layers, {sizes[3] / 1e9:0.000} GB in one file");
            Console.WriteLine($"| phase | seconds | peak RSS (MB) | peak RSS / model size | result |");
            Console.WriteLine($"| --- | ---: | ---: | ---: | --- |");
            for (var i = 0; i < rows.Count; i++)
            {
                var peak = double.Parse(rows[i][2], CultureInfo.InvariantCulture);
                Console.WriteLine($"| {rows[i][0]} | {rows[i][1]} | {peak / 1e6:0} | {peak / sizes[i]:0.000} | {rows[i][3]} |");
            }

            return 0;
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    public static int RunChild(string[] args)
    {
        var watch = Stopwatch.StartNew();
        var result = args[0] switch
        {
            "generate" => Generate(int.Parse(args[1], CultureInfo.InvariantCulture), args[2], ExternalDataMode.Auto),
            "generate-embedded" => Generate(int.Parse(args[1], CultureInfo.InvariantCulture), args[2], ExternalDataMode.Never),
            "roundtrip" => RoundTrip(args[1], args[2]),
            "ort" => CompareInOrt(args[1], args[2]),
            _ => throw new ArgumentException(args[0]),
        };
        Console.WriteLine($"RESULT\t{args[0]}\t{watch.Elapsed.TotalSeconds:0.0}\t{ChildProcess.PeakResidentBytes()}\t{result}");
        return 0;
    }

    private static string Generate(int layers, string path, ExternalDataMode mode)
    {
        var builder = new GraphBuilder("large").Input("x", DataType.Float, 1, Side);
        var random = new Random(42);
        var values = new float[Side * Side];
        for (var l = 0; l < layers; l++)
        {
            for (var i = 0; i < values.Length; i++)
            {
                values[i] = (float)((random.NextDouble() * 2 - 1) * Math.Sqrt(3.0 / Side)); // unit gain per layer: outputs neither vanish nor explode
            }

            builder.Initializer($"w{l}", values, Side, Side)
                .Node("MatMul", [l == 0 ? "x" : $"h{l - 1}", $"w{l}"], [l == layers - 1 ? "y" : $"h{l}"], $"layer{l}");
        }

        var model = builder.Output("y", DataType.Float, 1, Side).Build();
        model.Save(path, new OnnxWriteOptions { ExternalData = mode }); // Auto: over 2 GB, so the weights must go out
        var external = OnnxModel.Load(path).ExternalData.Count;
        if (external != (mode == ExternalDataMode.Auto ? layers : 0))
        {
            throw new InvalidOperationException($"unexpected number of external tensors: {external}");
        }

        return mode == ExternalDataMode.Auto ? $"{external} tensors written to external data automatically" : $"{layers} tensors embedded";
    }

    private static string RoundTrip(string source, string copy)
    {
        OnnxModel.Load(source).Save(copy);
        var data = copy + ".data";
        return $"model file {new FileInfo(copy).Length} B" + (File.Exists(data) ? $" + data {new FileInfo(data).Length} B" : " (embedded)");
    }

    private static string CompareInOrt(string source, string copy)
    {
        var input = new float[Side];
        for (var i = 0; i < Side; i++)
        {
            input[i] = (float)Math.Sin(i);
        }

        float[] RunModel(string path)
        {
            using var session = new InferenceSession(path);
            using var x = OrtValue.CreateTensorValueFromMemory(input, [1, Side]);
            using var results = session.Run(new RunOptions(), ["x"], [x], ["y"]);
            return results[0].GetTensorDataAsSpan<float>().ToArray();
        }

        var a = RunModel(source);
        var b = RunModel(copy);
        var identical = a.AsSpan().SequenceEqual(b);
        if (!identical)
        {
            throw new InvalidOperationException("ONNX Runtime outputs differ between the generated model and its copy");
        }

        return $"both load in ONNX Runtime, outputs bit-identical (y[0] = {a[0]:G6})";
    }

    private static string[] Child(params string[] args)
    {
        var fields = ChildProcess.Run(ChildVerb, args);
        Console.WriteLine("RESULT\t" + string.Join('\t', fields));
        return fields;
    }

    private static long FolderBytes(string folder) => Directory.GetFiles(folder).Sum(f => new FileInfo(f).Length);

    private static string? Option(string[] args, string name)
    {
        var i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }
}
