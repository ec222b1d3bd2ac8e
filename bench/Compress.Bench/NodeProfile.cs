using System.Text.Json;
using Compress.Core.Calibration;
using Compress.Core.Evaluation;
using Microsoft.ML.OnnxRuntime;

namespace Compress.Bench;

/// <summary>
/// Where a model's batch-1 time goes: ONNX Runtime's own profiler (one thread, the graph as ONNX Runtime optimized it)
/// over <c>runs</c> runs, each kernel's median microseconds with the op it ran as (QLinearConv, Conv+Relu fused, …).
/// Used by <c>latency --nodes</c> to explain a model that is slower than its source.
/// </summary>
internal static class NodeProfile
{
    /// <summary>
    /// The model as ONNX Runtime rewrites it at the extended level, saved: its QDQ groups fused into QLinearConv, QGemm,
    /// QLinearMatMul… — the QOperator form of a QDQ model, for timing the two forms side by side.
    /// </summary>
    public static string SaveFused(string model)
    {
        var path = Path.Combine(Path.GetTempPath(), $"compress-fused-{Environment.ProcessId}-{Path.GetFileNameWithoutExtension(model)}.qop.onnx");
        using var options = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            OptimizedModelFilePath = path,
            LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR,
        };
        using var session = new InferenceSession(model, options);
        return path;
    }

    public static void Print(string model, CalibrationSet data, int batch, int runs)
    {
        var prefix = Path.Combine(Path.GetTempPath(), $"compress-profile-{Environment.ProcessId}");
        string file;
        using (var runner = OrtModelRunner.Profiled(model, prefix))
        {
            // The runner feeds a model's constant inputs whole beside the samples, as every other timing does.
            runner.MedianLatencyMs(data, batch, runs, TimeSpan.MaxValue);
            file = runner.EndProfiling();
        }

        var times = new Dictionary<(string Node, string Op), List<double>>();
        using (var json = JsonDocument.Parse(File.ReadAllText(file)))
        {
            foreach (var e in json.RootElement.EnumerateArray())
            {
                if (e.GetProperty("cat").GetString() == "Node" && e.GetProperty("name").GetString() is { } name && name.EndsWith("_kernel_time", StringComparison.Ordinal))
                {
                    var op = e.GetProperty("args").GetProperty("op_name").GetString() ?? "?";
                    var key = (name[..^"_kernel_time".Length], op);
                    (times.TryGetValue(key, out var list) ? list : times[key] = []).Add(e.GetProperty("dur").GetDouble());
                }
            }
        }

        File.Delete(file);

        static double Median(List<double> v) => v.Order().ElementAt(v.Count / 2);
        Console.WriteLine($"{Path.GetFileName(model)}, batch {batch}: median µs per kernel over {runs} runs");
        Console.WriteLine("| node | op as run | µs |");
        Console.WriteLine("| --- | --- | ---: |");
        foreach (var ((node, op), list) in times)
        {
            Console.WriteLine($"| {node} | {op} | {Median(list):0.0} |");
        }

        Console.WriteLine($"| total | | {times.Values.Sum(Median):0.0} |");
    }
}
