using System.Diagnostics;
using System.Globalization;
using Compress.Core;
using Compress.Core.Spec;

namespace Compress.Bench;

/// <summary>
/// <c>run &lt;model.onnx&gt; [--data file.npz] [--samples N] [--only step,…]</c>: time and peak memory of ordinary
/// <c>compress run</c>s on one model, each in its own process so its peak resident memory (VmHWM) is its own. Steps that
/// need no data (magnitude 50%, dynamic int8, int4 weight-only, fp16) are held to 3× the model's size + 0.5 GB;
/// with <c>--data</c> every run evaluates on it, and with the data-aware steps (SparseGPT 50%, static int8, GPTQ int4)
/// is held to 3× model + data + 1 GB. The
/// fidelity floor is relaxed: these runs measure cost, not accuracy. Latency measurement is off.
/// </summary>
internal static class RunBenchmark
{
    public const string ChildVerb = "__run-step";

    private static readonly (string Name, string Step, bool DataAware)[] Steps =
    [
        ("magnitude 50%", """{ "prune": { "method": "magnitude", "sparsity": 0.5 } }""", false),
        ("dynamic int8", """{ "quantize": { "weights": "int8", "activations": "dynamic" } }""", false),
        ("int4 weight-only", """{ "quantize": { "weights": "int4", "blockSize": 32 } }""", false),
        ("fp16", """{ "quantize": { "weights": "fp16" } }""", false),
        ("obs 50%", """{ "prune": { "method": "obs", "sparsity": 0.5 } }""", true),
        ("obs 50% per layer", """{ "prune": { "method": "obs", "sparsity": 0.5, "scope": "layer" } }""", true),
        ("obs 50% per layer + static int8", """{ "prune": { "method": "obs", "sparsity": 0.5, "scope": "layer" } }, { "quantize": { "weights": "int8", "activations": "uint8" } }""", true),
        ("static int8", """{ "quantize": { "weights": "int8", "activations": "uint8" } }""", true),
        ("gptq int4", """{ "quantize": { "weights": "int4", "method": "gptq", "blockSize": 32 } }""", true),
    ];

    public static int Run(string[] args)
    {
        if (args.Length == 0)
        {
            Console.Error.WriteLine("usage: Compress.Bench run <model.onnx> [--data file.npz] [--samples N] [--only name,…]");
            return 2;
        }

        var model = Path.GetFullPath(args[0]);
        var data = Option(args, "--data") is { } d ? Path.GetFullPath(d) : null;
        var samples = Option(args, "--samples") ?? "128";
        var only = Option(args, "--only")?.Split(',').Select(s => s.Trim()).ToHashSet();
        var folder = Path.Combine(Path.GetTempPath(), "compress-bench-run", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        var modelBytes = Compress.Core.Onnx.OnnxModel.Load(model).BytesOnDisk();
        var dataBytes = data is null ? 0 : new FileInfo(data).Length;
        Console.WriteLine($"{Path.GetFileName(model)}: {modelBytes / 1e6:0.0} MB{(data is null ? "" : $", data {Path.GetFileName(data)} {dataBytes / 1e6:0.0} MB, {samples} samples")}; {Environment.ProcessorCount} cores");
        Console.WriteLine();
        Console.WriteLine("| step | seconds | peak RSS (MB) | limit (MB) | within | output |");
        Console.WriteLine("| --- | ---: | ---: | ---: | --- | --- |");
        var perStage = new List<(string Name, string Stages)>();
        try
        {
            foreach (var (name, step, dataAware) in Steps.Where(s => (only is null || only.Contains(s.Name)) && (data is not null || !s.DataAware)))
            {
                var dataJson = data is null ? "" : $$""" "data": { "calibration": { "path": {{System.Text.Json.JsonSerializer.Serialize(data)}}, "samples": {{samples}} } }, """;
                var spec = Path.Combine(folder, "spec.json");
                var relaxed = data is null ? "" : """, "constraints": { "minSqnrDb": -100 }""";
                File.WriteAllText(spec, $$"""{ {{dataJson}} "steps": [ {{step}} ]{{relaxed}} }""");
                var limit = 3 * modelBytes + (data is not null ? dataBytes + (1L << 30) : 1L << 29); // with data every run evaluates
                var (seconds, peak, result, stages) = Child(model, spec, Path.Combine(folder, "out.onnx"));
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {name} | {seconds} | {peak / 1e6:0} | {limit / 1e6:0} | {(peak <= limit ? "yes" : "**no**")} | {result} |"));
                perStage.Add((name, stages));
            }

            Console.WriteLine();
            Console.WriteLine("| step | stage | seconds | peak RSS (MB, sampled) |");
            Console.WriteLine("| --- | --- | ---: | ---: |");
            foreach (var (name, stages) in perStage)
            {
                foreach (var stage in stages.Split(';'))
                {
                    var parts = stage.Split(' ');
                    Console.WriteLine($"| {name} | {string.Join(' ', parts[..^2])} | {parts[^2]} | {parts[^1]} |");
                }
            }
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }

        return 0;
    }

    /// <summary>One compression in this process; prints seconds, peak RSS and the summary on a RESULT line.</summary>
    public static int RunChild(string[] args)
    {
        var watch = Stopwatch.StartNew();
        using var stages = new StageRecorder();
        string result;
        try
        {
            var report = CompressionPipeline.Run(args[0], SpecLoader.Load(args[1]), args[2], stages.Progress, measureLatency: false);
            result = string.Create(CultureInfo.InvariantCulture, $"{report.Size.Ratio:0.000}× of the source") +
                (report.Metrics is { } m ? string.Create(CultureInfo.InvariantCulture, $", {(m.Agreement is { } a ? $"agreement {a:0.0000}" : $"cosine {m.MeanCosine:0.0000}")}") : "");
        }
        catch (Compress.Core.Diagnostics.CompressException e)
        {
            result = e.Diagnostic.Code + ": " + e.Diagnostic.Message.Split(';')[0];
        }

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"RESULT\t{watch.Elapsed.TotalSeconds:0.0}\t{ChildProcess.PeakResidentBytes()}\t{result}\t{stages.Summary()}"));
        return 0;
    }

    private static (string Seconds, long Peak, string Result, string Stages) Child(string model, string spec, string output)
    {
        var fields = ChildProcess.Run(ChildVerb, model, spec, output);
        return (fields[0], long.Parse(fields[1], CultureInfo.InvariantCulture), fields[2], fields[3]);
    }

    private static string? Option(string[] args, string name)
    {
        var i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }
}
