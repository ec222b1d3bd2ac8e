using System.Diagnostics;
using Compress.Core;
using Compress.Core.Calibration;
using Compress.Core.Data;
using Compress.Core.Evaluation;
using Compress.Core.Onnx;
using Compress.Core.Passes;
using Compress.Core.Passes.Quantization;
using Compress.Core.Spec;

namespace Compress.Bench;

/// <summary>
/// Static int8 on the project's CNN with 512 calibration samples, against the 512 forward passes alone in ONNX
/// Runtime (batch 64, one thread, like calibration). Median of several runs; the ratio is the figure of merit.
/// </summary>
internal static class CalibrationBenchmark
{
    public static int Run(string[] args)
    {
        var root = FindRoot();
        var model = Path.Combine(root, "models", "fashion_cnn.onnx");
        var folder = Path.Combine(Path.GetTempPath(), "compress-bench-calibration");
        Directory.CreateDirectory(folder);
        var data = Path.Combine(folder, "calib512.npz");
        FashionMnist.WriteNpz(data, test: false, [1, 28, 28], 512);
        var repeats = args.Length > 0 ? int.Parse(args[0]) : 5;
        var specPath = Path.Combine(folder, "spec.json");
        File.WriteAllText(specPath, """
            { "data": { "calibration": { "path": "calib512.npz" } },
              "steps": [ { "quantize": { "weights": "int8", "activations": "uint8", "calibration": "minmax" } } ] }
            """);
        var spec = SpecLoader.Load(specPath);
        var onnx = OnnxModel.Load(model);
        var set = CalibrationSet.Load(data, onnx, null, null, 0);

        double Median(Action action)
        {
            var times = new List<double>();
            for (var i = 0; i < repeats; i++)
            {
                var watch = Stopwatch.StartNew();
                action();
                times.Add(watch.Elapsed.TotalSeconds);
            }

            times.Sort();
            return times[times.Count / 2];
        }

        var forward = Median(() =>
        {
            using var runner = new OrtModelRunner(onnx);
            runner.Run(set, 64, (_, _, _) => { });
        });
        var pass = Median(() =>
        {
            var working = OnnxModel.Load(model);
            var context = new CompressionContext(working, spec, m => CalibrationSet.Load(spec.Calibration!, m, spec.File));
            new QdqQuantizer((Compress.Spec.QuantizeStep)spec.Steps[0]).Apply(context);
        });
        var full = Median(() => CompressionPipeline.Run(model, spec, Path.Combine(folder, "out.onnx"), measureLatency: false));
        Console.WriteLine($"| measurement (CNN, 512 calibration samples, median of {repeats}) | seconds | ratio to forward passes |");
        Console.WriteLine("| --- | ---: | ---: |");
        Console.WriteLine($"| 512 forward passes in ONNX Runtime (session included) | {forward:0.000} | 1.00 |");
        Console.WriteLine($"| static int8 pass: calibration + QDQ rewrite | {pass:0.000} | {pass / forward:0.00} |");
        Console.WriteLine($"| whole `compress run` (load, pass, ORT load check, validation of both models on the 512 samples, write) | {full:0.000} | {full / forward:0.00} |");
        Directory.Delete(folder, recursive: true);
        return 0;
    }

    internal static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Compress.Build.sln")))
            {
                return dir.FullName;
            }
        }

        throw new DirectoryNotFoundException("Compress.Build.sln");
    }
}
