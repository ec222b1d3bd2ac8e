using System.Diagnostics;
using Compress.Core;
using Compress.Core.Allocation;
using Compress.Core.Data;
using Compress.Core.Reports;
using Compress.Core.Spec;

namespace Compress.Bench;

/// <summary>
/// The two allocation solvers on the error databases of real models (issue 16): for each model, one run of global
/// obs (the default allocation, cost = weights kept) and one of <c>allocate</c> (sparsity × int8-or-float under a
/// size budget, cost = bytes) give their databases; each database is solved at five budgets by the dynamic program
/// and by annealing the QUBO (objective, gap, time), and both solvers' allocations are compressed and evaluated.
/// Models: <c>mlp</c>, <c>cnn</c>, or <c>path.onnx:flat|image|row:sparsity</c>.
/// </summary>
internal static class AllocationBenchmark
{
    public static int Run(string[] args)
    {
        var root = CalibrationBenchmark.FindRoot();
        var folder = Path.Combine(Path.GetTempPath(), "compress-bench-allocation");
        Directory.CreateDirectory(folder);
        var models = (args.Length > 0 ? args : ["mlp", "cnn"]).Select(a => a switch
        {
            "mlp" => (Path.Combine(root, "models", "fashion_mlp.onnx"), "flat", 0.9),
            "cnn" => (Path.Combine(root, "models", "fashion_cnn.onnx"), "image", 0.95),
            _ => (a.Split(':')[0], a.Split(':')[1], double.Parse(a.Split(':')[2], System.Globalization.CultureInfo.InvariantCulture)),
        }).ToList();
        Console.WriteLine("| model | problem | layers × options | budget | DP objective | DP ms | anneal objective | gap | anneal ms | QUBO variables |");
        Console.WriteLine("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        var accuracy = new List<string>();
        foreach (var (model, kind, sparsity) in models)
        {
            var (calibration, test) = Data(folder, kind);
            var name = Path.GetFileNameWithoutExtension(model);
            var global = Compress(folder, model, calibration, test, $$"""{ "prune": { "method": "obs", "sparsity": {{sparsity}} } }""");
            Solve(name, $"obs {sparsity:P0} (weights kept)", global.Report.Allocation!);
            accuracy.Add($"| {name} | global obs {sparsity:P0}, DP shares | {global.Report.Metrics!.CompressedAccuracy:P2} | {global.Report.Size.CompressedBytes:N0} | {global.Seconds:0.0} | {global.PeakMb:N0} |");
            foreach (var method in new[] { "dp", "anneal" })
            {
                var mixed = Compress(folder, model, calibration, test, $$"""
                    { "allocate": { "method": "{{method}}", "size": 0.1, "rounds": 1 } }, { "prune": { "method": "obs" } },
                    { "quantize": { "weights": "int8", "activations": "dynamic" } }
                    """);
                if (method == "dp")
                {
                    Solve(name, "size 0.1: sparsity × int8/float (bytes)", mixed.Report.Allocation!);
                }

                accuracy.Add($"| {name} | allocate {method}, size 0.1, obs + int8/float | {mixed.Report.Metrics!.CompressedAccuracy:P2} | {mixed.Report.Size.CompressedBytes:N0} | {mixed.Seconds:0.0} | {mixed.PeakMb:N0} |");
            }
        }

        Console.WriteLine();
        Console.WriteLine("| model | run | accuracy | bytes | seconds | peak MB |");
        Console.WriteLine("| --- | --- | ---: | ---: | ---: | ---: |");
        accuracy.ForEach(Console.WriteLine);
        Console.WriteLine();
        Console.WriteLine($"{Environment.ProcessorCount} cores, {Environment.OSVersion}; peak MB is this process's peak working set so far.");
        return 0;
    }

    private static void Solve(string model, string label, AllocationFigures figures)
    {
        var layers = figures.Layers.Select(l => (IReadOnlyList<LayerChoice>)l.Options.Select(o => new LayerChoice(o.Sparsity, o.Bits, o.Bytes, o.Error)).ToList()).ToList();
        foreach (var factor in new[] { 0.5, 0.75, 1.0, 1.25, 1.5 })
        {
            var problem = new AllocationProblem(layers, (long)(figures.LayerBudget * factor));
            if (!problem.IsFeasible)
            {
                continue;
            }

            var dp = DynamicProgram.Solve(problem);
            var annealer = new QuboAnnealer();
            var annealed = annealer.Solve(problem);
            var gap = dp.Objective > 0 ? (annealed.Objective - dp.Objective) / dp.Objective : 0;
            Console.WriteLine($"| {model} | {label} | {layers.Count} × {layers.Average(l => l.Count):0} | {factor:0.##}× ({problem.Budget:N0}) | {dp.Objective:0.#####} | " +
                $"{dp.Time.TotalMilliseconds:0.0} | {annealed.Objective:0.#####} | {gap:+0.00%;-0.00%;0%} | {annealed.Time.TotalMilliseconds:0} | {annealer.Variables} |");
        }
    }

    private static (CompressionReport Report, double Seconds, long PeakMb) Compress(string folder, string model, string calibration, string test, string steps)
    {
        var spec = Path.Combine(folder, "spec.json");
        File.WriteAllText(spec, $$"""
            { "data": { "calibration": { "path": "{{Path.GetFileName(calibration)}}", "samples": 512, "seed": 7 },
                        "evaluation": { "path": "{{Path.GetFileName(test)}}", "labels": "labels" } },
              "steps": [ {{steps}} ], "constraints": { "minAgreement": 0 } }
            """);
        var watch = Stopwatch.StartNew();
        var report = CompressionPipeline.Run(model, SpecLoader.Load(spec), Path.Combine(folder, "out.onnx"), measureLatency: false);
        return (report, watch.Elapsed.TotalSeconds, Process.GetCurrentProcess().PeakWorkingSet64 >> 20);
    }

    /// <summary>Calibration (2,048 training images) and test (10,000) as .npz, shaped for the model: [784], [1, 28, 28] or [28, 28].</summary>
    private static (string Calibration, string Test) Data(string folder, string kind)
    {
        long[] shape = kind switch { "flat" => [784], "image" => [1, 28, 28], _ => [28, 28] };
        var calibration = Path.Combine(folder, $"calib_{kind}.npz");
        var test = Path.Combine(folder, $"test_{kind}.npz");
        if (!File.Exists(calibration))
        {
            FashionMnist.WriteNpz(calibration, test: false, shape, 2048);
            FashionMnist.WriteNpz(test, test: true, shape, null);
        }

        return (calibration, test);
    }
}
