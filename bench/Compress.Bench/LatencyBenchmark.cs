using Compress.Core.Calibration;
using Compress.Core.Evaluation;
using Compress.Core.Onnx;

namespace Compress.Bench;

/// <summary>
/// <c>latency &lt;data.npz&gt; &lt;model.onnx&gt;… [--nodes] [--qoperator]</c>: batch-1 and batch-32 latency of each model (a smaller batch where the model or its data fix one) in ONNX Runtime, one
/// thread, the median of up to 2,001 runs (5 s each at most), models interleaved over three rounds so a busy moment
/// does not favour one; the ratio is against the first model.
/// </summary>
public static class LatencyBenchmark
{
    public static int Run(string[] args)
    {
        if (args.Length < 2)
        {
            Console.Error.WriteLine("usage: Compress.Bench latency <data.npz> <model.onnx> [<model.onnx> …]");
            return 2;
        }

        // --nodes: also each model's per-kernel table (ONNX Runtime's profiler) at batch 1 and 32.
        // --qoperator: each model also as ONNX Runtime's extended-level rewrite (a QDQ model's QOperator form), timed beside it.
        var nodes = args.Contains("--nodes");
        var models = args[1..].Where(a => !a.StartsWith("--", StringComparison.Ordinal)).ToArray();
        if (args.Contains("--qoperator"))
        {
            models = models.SelectMany(m => new[] { m, NodeProfile.SaveFused(m) }).ToArray();
        }

        var data = CalibrationSet.Load(args[0], OnnxModel.LoadInterface(models[0]), null, 64, 0);
        var rounds = models.ToDictionary(m => m, _ => (One: new List<double>(), Batch: new List<double>()));
        var batch = 32;
        for (var round = 0; round < 3; round++)
        {
            foreach (var model in models)
            {
                using var runner = OrtModelRunner.FromFile(model, arena: true);
                // A model that fixes its batch, or takes a state fed whole (an RNN's), runs at the batch it allows.
                batch = Math.Min(batch, runner.MaxBatch(32, data));
                rounds[model].One.Add(runner.MedianLatencyMs(data, 1, 2001, TimeSpan.FromSeconds(5)));
                rounds[model].Batch.Add(runner.MedianLatencyMs(data, batch, 201, TimeSpan.FromSeconds(5)));
            }
        }

        static double Median(List<double> values) => values.Order().ElementAt(values.Count / 2);
        var first = Median(rounds[models[0]].One);
        Console.WriteLine($"| model | batch 1 (ms) | × vs first | batch {batch} (ms) |");
        Console.WriteLine($"| --- | ---: | ---: | ---: |");
        foreach (var model in models)
        {
            var one = Median(rounds[model].One);
            Console.WriteLine($"| {Path.GetFileName(model)} | {one:0.0000} | {first / one:0.00} | {Median(rounds[model].Batch):0.000} |");
        }

        foreach (var model in nodes ? models : [])
        {
            NodeProfile.Print(model, data, 1, 500);
            if (batch > 1)
            {
                NodeProfile.Print(model, data, batch, 50);
            }
        }

        return 0;
    }
}
