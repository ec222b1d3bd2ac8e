using System.Diagnostics;
using Compress.Core;
using Compress.Core.Data;
using Compress.Core.Spec;
using Compress.Spec.Methods;

namespace Compress.Bench;

/// <summary>
/// One-shot pruning without fine-tuning: accuracy on the 10,000 Fashion-MNIST test images against global sparsity
/// (50/70/80/90/95%) for every pruning method of the catalog (magnitude, OBS/SparseGPT, WoodFisher, SNIP, Wanda), on
/// the project's MLP and CNN, each compressed by the real pipeline with 512 seeded calibration samples and its
/// defaults. Prints one table per model with the seconds each compression took.
/// </summary>
internal static class PruningBenchmark
{
    private static readonly string[] Methods = [.. MethodCatalog.Of(StepKind.Prune).Select(m => m.Name)];
    private static readonly double[] Sparsities = [0.5, 0.7, 0.8, 0.9, 0.95];

    public static int Run(string[] args)
    {
        var root = CalibrationBenchmark.FindRoot();
        var models = args.Length > 0 ? args : ["mlp", "cnn"];
        var folder = Path.Combine(Path.GetTempPath(), "compress-bench-pruning");
        Directory.CreateDirectory(folder);
        foreach (var name in models)
        {
            var image = name == "cnn";
            var calibration = Path.Combine(folder, image ? "calib_image.npz" : "calib_flat.npz");
            var test = Path.Combine(folder, image ? "test_image.npz" : "test_flat.npz");
            long[] shape = image ? [1, 28, 28] : [784];
            FashionMnist.WriteNpz(calibration, test: false, shape, 2048);
            FashionMnist.WriteNpz(test, test: true, shape, null);
            var model = Path.Combine(root, "models", $"fashion_{name}.onnx");
            Console.WriteLine($"## fashion_{name}.onnx: top-1 accuracy (%) after one-shot global pruning, no fine-tuning (seconds per compression)");
            Console.WriteLine();
            Console.WriteLine($"| method | {string.Join(" | ", Sparsities.Select(s => $"{s:P0}"))} |");
            Console.WriteLine($"| --- |{string.Concat(Sparsities.Select(_ => " ---: |"))}");
            double? dense = null;
            foreach (var method in Methods)
            {
                var cells = new List<string>();
                foreach (var sparsity in Sparsities)
                {
                    var spec = Path.Combine(folder, "spec.json");
                    File.WriteAllText(spec, $$"""
                        { "data": { "calibration": { "path": "{{Path.GetFileName(calibration)}}", "samples": 512, "seed": 7 },
                                    "evaluation": { "path": "{{Path.GetFileName(test)}}", "labels": "labels" } },
                          "steps": [ { "prune": { "method": "{{method}}", "sparsity": {{sparsity}} } } ],
                          "constraints": { "minAgreement": 0 } }
                        """);
                    var watch = Stopwatch.StartNew();
                    var report = CompressionPipeline.Run(model, SpecLoader.Load(spec), Path.Combine(folder, "out.onnx"), measureLatency: false);
                    dense ??= report.Metrics!.OriginalAccuracy;
                    cells.Add($"{report.Metrics!.CompressedAccuracy * 100:0.00} ({watch.Elapsed.TotalSeconds:0.0} s)");
                }

                Console.WriteLine($"| {method} | {string.Join(" | ", cells)} |");
            }

            Console.WriteLine();
            Console.WriteLine($"Dense: {dense * 100:0.00}%. {Environment.ProcessorCount} cores, {Environment.OSVersion}.");
            Console.WriteLine();
        }

        return 0;
    }
}
