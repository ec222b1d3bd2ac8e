using System.Diagnostics;
using System.Globalization;
using Compress.Runtime;
using Microsoft.ML.OnnxRuntime;

namespace Compress.Bench;

/// <summary>
/// The generated wrapper (FashionMlpModel, from fashion_mlp.manifest.json) against hand-written ONNX Runtime code
/// doing the same job — an OrtValue over the caller's array, Run, the logits copied out — at batch 1 and 64, one
/// thread. Rounds alternate between the two; the figure is the median of the rounds' mean time per call.
/// </summary>
internal static class WrapperBenchmark
{
    public static int Run(string[] args)
    {
        var rounds = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 15;
        var path = Path.Combine(CalibrationBenchmark.FindRoot(), "models", "fashion_mlp.onnx");
        using var wrapper = FashionMlpModel.Load(path, new ModelOptions { IntraOpThreads = 1, InterOpThreads = 1 });
        using var options = new SessionOptions { IntraOpNumThreads = 1, InterOpNumThreads = 1 };
        using var session = new InferenceSession(path, options);
        using var runOptions = new RunOptions();
        string[] inputNames = ["input"];
        string[] outputNames = ["logits"];

        Console.WriteLine($"models/fashion_mlp.onnx, 1 thread, {rounds} rounds; microseconds per call");
        Console.WriteLine();
        Console.WriteLine("| batch | hand-written ONNX Runtime | generated wrapper | overhead |");
        Console.WriteLine("| ---: | ---: | ---: | ---: |");
        foreach (var batch in new[] { 1, 64 })
        {
            var pixels = Enumerable.Range(0, batch * 784).Select(i => (i % 255) / 255f).ToArray();
            var calls = batch == 1 ? 4000 : 400;
            float[] Raw()
            {
                using var input = OrtValue.CreateTensorValueFromMemory(pixels, [batch, 784]);
                using var results = session.Run(runOptions, inputNames, [input], outputNames);
                return results[0].GetTensorDataAsSpan<float>().ToArray();
            }

            float[] Wrapped() => wrapper.Run(pixels).Logits.Data;

            if (!Raw().AsSpan().SequenceEqual(Wrapped()))
            {
                throw new InvalidOperationException("the wrapper and the raw API disagree");
            }

            var raw = new List<double>();
            var wrapped = new List<double>();
            for (var round = 0; round < rounds; round++)
            {
                raw.Add(Measure(Raw, calls));
                wrapped.Add(Measure(Wrapped, calls));
            }

            var a = raw.Order().ElementAt(rounds / 2);
            var b = wrapped.Order().ElementAt(rounds / 2);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {batch} | {a:0.00} | {b:0.00} | {(b / a - 1) * 100:+0.0;-0.0}% |"));
        }

        return 0;
    }

    private static double Measure(Func<float[]> call, int calls)
    {
        for (var i = 0; i < calls / 10; i++)
        {
            call();
        }

        var watch = Stopwatch.StartNew();
        for (var i = 0; i < calls; i++)
        {
            call();
        }

        return watch.Elapsed.TotalMilliseconds * 1000 / calls;
    }
}
