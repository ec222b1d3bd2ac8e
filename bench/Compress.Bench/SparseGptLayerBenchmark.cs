using System.Diagnostics;
using Compress.Core.Passes.SecondOrder;
using Compress.Core.Torch;
using static TorchSharp.torch;

namespace Compress.Bench;

/// <summary>
/// SparseGPT on one linear layer: a random 4096×4096 weight, 512 calibration rows with correlated features,
/// 50% unstructured. Times the Hessian (2XXᵀ), the OBS pass itself, and reports the layer's output error against
/// magnitude pruning at the same sparsity. Median of the given number of runs.
/// </summary>
internal static class SparseGptLayerBenchmark
{
    public static int Run(string[] args)
    {
        var size = args.Length > 0 ? int.Parse(args[0]) : 4096;
        var rows = args.Length > 1 ? int.Parse(args[1]) : 512;
        var repeats = args.Length > 2 ? int.Parse(args[2]) : 3;
        TorchRuntime.EnsureLoaded();
        var generator = new Generator(1);
        var weight = randn([size, size], generator: generator) / Math.Sqrt(size);
        var mixing = randn([size, size], generator: generator) / Math.Sqrt(size);
        var x = randn([rows, size], generator: generator).mm(mixing) + randn([rows, size], generator: generator) * 0.1;
        var options = new ObsOptions { Sparsity = 0.5 };
        var hessianTimes = new List<double>();
        var obsTimes = new List<double>();
        Tensor pruned = weight;
        for (var i = 0; i < repeats; i++)
        {
            using var scope = NewDisposeScope();
            var watch = Stopwatch.StartNew();
            var hessian = x.t().mm(x).to_type(ScalarType.Float64).mul_(2.0 / rows);
            hessianTimes.Add(watch.Elapsed.TotalSeconds);
            watch.Restart();
            pruned = LayerObs.Run(weight, hessian, options).Weight.MoveToOuterDisposeScope();
            obsTimes.Add(watch.Elapsed.TotalSeconds);
        }

        var threshold = weight.abs().flatten().kthvalue(weight.numel() / 2, 0).values;
        var magnitude = where(weight.abs() > threshold, weight, 0f);
        double Error(Tensor w) => ((x.mm(w.t()) - x.mm(weight.t())).square().sum() / x.mm(weight.t()).square().sum()).item<float>();
        Console.WriteLine($"## SparseGPT, one {size}×{size} linear layer, {rows} calibration rows, 50% unstructured ({Environment.ProcessorCount} cores, {get_num_threads()} torch threads)");
        Console.WriteLine();
        Console.WriteLine("| step | median seconds |");
        Console.WriteLine("| --- | ---: |");
        Console.WriteLine($"| Hessian 2XXᵀ | {Median(hessianTimes):0.00} |");
        Console.WriteLine($"| SparseGPT (Cholesky + column sweep) | {Median(obsTimes):0.00} |");
        Console.WriteLine($"| total | {Median(hessianTimes) + Median(obsTimes):0.00} |");
        Console.WriteLine();
        Console.WriteLine($"Relative output error ‖ŴX − WX‖²/‖WX‖²: SparseGPT {Error(pruned):E3}, magnitude {Error(magnitude):E3}; sparsity {1 - pruned.count_nonzero().item<long>() / (double)pruned.numel():P2}.");
        return 0;
    }

    private static double Median(List<double> values) => values.Order().ElementAt(values.Count / 2);
}
