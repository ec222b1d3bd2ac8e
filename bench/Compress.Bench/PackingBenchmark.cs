using System.Diagnostics;
using System.Globalization;
using Compress.Core.Onnx;
using Compress.Core.Packing;
using Compress.Runtime.Packing;
using Microsoft.ML.OnnxRuntime;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Bench;

/// <summary>
/// <c>packing [file.cpack …]</c>: (1) the load overhead of a packed model — a synthetic 10 MB float32 MLP
/// (1024-1024-1024-512, 80 % pruned, 5-bit shared values) opened in ONNX Runtime from its .onnx file and from its
/// .cpack (expand in memory + session from bytes), each phase in its own process for its peak memory; (2) the entropy
/// coder against Huffman on the symbol streams of the given packed files (and the synthetic one): bytes and decode speed.
/// </summary>
internal static class PackingBenchmark
{
    public const string ChildVerb = "packing-child";
    private const int Repeats = 7;

    public static int Run(string[] args)
    {
        var dir = Path.Combine(Path.GetTempPath(), $"compress-bench-packing-{Environment.ProcessId}");
        Directory.CreateDirectory(dir);
        try
        {
            var (onnx, packed) = (Path.Combine(dir, "mlp10.onnx"), Path.Combine(dir, "mlp10.cpack"));
            ChildProcess.Run(ChildVerb, "generate", onnx, packed);
            Console.WriteLine($"## Load overhead of a packed model ({new FileInfo(onnx).Length / 1e6:0.0} MB float32 .onnx, {new FileInfo(packed).Length / 1e3:0.0} kB .cpack; median of {Repeats}, each phase in its own process)");
            Console.WriteLine();
            Console.WriteLine("| phase | milliseconds | peak RSS (MB) |");
            Console.WriteLine("| --- | ---: | ---: |");
            foreach (var phase in new[] { "session-onnx", "expand", "session-cpack" })
            {
                var row = ChildProcess.Run(ChildVerb, phase, phase == "session-onnx" ? onnx : packed);
                Console.WriteLine($"| {row[0]} | {double.Parse(row[1], CultureInfo.InvariantCulture):0.0} | {long.Parse(row[2], CultureInfo.InvariantCulture) / 1e6:0} |");
            }

            Console.WriteLine();
            Console.WriteLine("## Entropy coder: rANS (2 contexts) against Huffman (one static code per tensor), same symbols");
            Console.WriteLine();
            Console.WriteLine("| file | symbols | order-0 entropy (kB) | rANS (kB) | Huffman (kB) | rANS decode (M symbols/s) | Huffman decode (M symbols/s) |");
            Console.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
            foreach (var file in args.Append(packed))
            {
                Console.WriteLine(CoderRow(file));
            }

            return 0;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    public static int RunChild(string[] args)
    {
        if (args[0] == "generate")
        {
            var model = Synthetic();
            model.Save(args[1]);
            File.WriteAllBytes(args[2], PackedArtifact.Pack(model, args[2]));
            Console.WriteLine("RESULT\tgenerate\t0\t0");
            return 0;
        }

        var bytes = File.ReadAllBytes(args[1]);
        var times = new List<double>();
        for (var i = 0; i < Repeats; i++)
        {
            var watch = Stopwatch.StartNew();
            switch (args[0])
            {
                case "session-onnx":
                    using (new InferenceSession(args[1]))
                    {
                    }

                    break;
                case "expand":
                    PackedModel.Expand(bytes);
                    break;
                case "session-cpack":
                    using (new InferenceSession(PackedModel.Expand(bytes)))
                    {
                    }

                    break;
                default:
                    throw new ArgumentException(args[0]);
            }

            times.Add(watch.Elapsed.TotalMilliseconds);
        }

        var name = args[0] switch { "session-onnx" => "session from the .onnx file", "expand" => "expand the .cpack in memory", _ => "expand + session from the bytes" };
        Console.WriteLine(FormattableString.Invariant($"RESULT\t{name}\t{times.Order().ElementAt(Repeats / 2)}\t{ChildProcess.PeakResidentBytes()}"));
        return 0;
    }

    /// <summary>1024-1024-1024-512 MatMul+Relu, 80 % of each weight zero, the rest on 32 values: 2.6 M weights, 10.5 MB.</summary>
    private static OnnxModel Synthetic()
    {
        var random = new Random(18);
        float[] Weight(int rows, int cols) => Enumerable.Range(0, rows * cols)
            .Select(_ => random.NextDouble() < 0.8 ? 0f : (float)Math.Round(Gaussian(random) * 4) / 4f * 0.05f)
            .ToArray();
        var builder = new GraphBuilder("mlp10").Input("x", DataType.Float, "batch", 1024);
        var (input, sizes) = ("x", new[] { 1024, 1024, 1024, 512 });
        for (var l = 0; l < 3; l++)
        {
            builder.Initializer($"w{l}", Weight(sizes[l], sizes[l + 1]), sizes[l], sizes[l + 1])
                .Node("MatMul", [input, $"w{l}"], [$"h{l}"], $"fc{l}")
                .Node("Relu", [$"h{l}"], [$"a{l}"], $"relu{l}");
            input = $"a{l}";
        }

        return builder.Output(input, DataType.Float, "batch", 512).Build();
    }

    private static double Gaussian(Random random) => Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());

    private static string CoderRow(string file)
    {
        var streams = PackedStreams.Read(File.ReadAllBytes(file));
        long symbols = 0;
        double entropy = 0, rans = 0, huffman = 0, ransSeconds = 0, huffmanSeconds = 0;
        foreach (var (stream, alphabet) in streams)
        {
            symbols += stream.Length;
            entropy += Entropy(stream, alphabet) * stream.Length / 8;
            var writer = new PackedWriter();
            RansCoder.Encode(stream, alphabet, writer);
            rans += writer.Length;
            var decoded = new ushort[stream.Length];
            ransSeconds += Time(() =>
            {
                var reader = new PackedReader(writer.Written, "bench");
                RansCoder.Decode(ref reader, alphabet, decoded);
            });
            var code = HuffmanCode.Build(stream, alphabet);
            var bits = code.Encode(stream);
            huffman += bits.Length + code.TableBytes;
            huffmanSeconds += Time(() => code.Decode(bits, decoded));
            if (!decoded.AsSpan().SequenceEqual(stream))
            {
                throw new InvalidOperationException("Huffman round trip failed");
            }
        }

        return FormattableString.Invariant($"| {Path.GetFileName(file)} | {symbols:N0} | {entropy / 1e3:0.0} | {rans / 1e3:0.0} | {huffman / 1e3:0.0} | {symbols / ransSeconds / 1e6:0} | {symbols / huffmanSeconds / 1e6:0} |");
    }

    private static double Time(Action action)
    {
        var times = new List<double>();
        for (var i = 0; i < Repeats; i++)
        {
            var watch = Stopwatch.StartNew();
            action();
            times.Add(watch.Elapsed.TotalSeconds);
        }

        return times.Order().ElementAt(Repeats / 2);
    }

    private static double Entropy(ushort[] symbols, int alphabet)
    {
        var counts = new double[alphabet];
        foreach (var s in symbols)
        {
            counts[s]++;
        }

        return -counts.Where(c => c > 0).Sum(c => c / symbols.Length * Math.Log2(c / symbols.Length));
    }
}
