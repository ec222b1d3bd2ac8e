using System.Diagnostics;
using System.Globalization;
using Compress.Core.Data;

namespace Compress.Bench;

/// <summary>
/// Build times of the sample app with Compress.Build: the cold build (restore and compression included) and the
/// no-op build (nothing changed), against the same project without its CompressModel item. The package is packed
/// into a temporary feed with a version of its own; each figure is the median of several runs.
/// </summary>
internal static class BuildTimeBenchmark
{
    public static int Run(string[] args)
    {
        var repeats = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 7;
        var root = CalibrationBenchmark.FindRoot();
        var work = Path.Combine(Path.GetTempPath(), "compress-bench-build", DateTime.UtcNow.ToString("yyyyMMddHHmmss", CultureInfo.InvariantCulture));
        var feed = Path.Combine(work, "feed");
        var version = "0.1.0-bench." + DateTime.UtcNow.ToString("yyyyMMddHHmmss", CultureInfo.InvariantCulture);
        Console.WriteLine($"packing Compress.Build {version} ...");
        foreach (var project in new[] { "src/Compress.Build", "src/Compress.Runtime" })
        {
            Dotnet(root, "pack", project, "-c", "Release", "-o", feed, $"-p:PackageVersion={version}", "--nologo", "-v", "quiet");
        }

        var sample = Path.Combine(root, "samples", "FashionClassifier");
        var data = Path.Combine(work, "data");
        Directory.CreateDirectory(data);
        FashionMnist.WriteNpz(Path.Combine(data, "fashion-calibration.npz"), test: false, [784], 512);
        FashionMnist.WriteNpz(Path.Combine(data, "fashion-test.npz"), test: true, [784]);
        var with = Copy(sample, Path.Combine(work, "with"), feed, version, data, root, keepItem: true);
        var without = Copy(sample, Path.Combine(work, "without"), feed, version, data, root, keepItem: false);

        var rows = new List<(string, double, double)>();
        var coldWith = Time(with, "build", "-c", "Release");
        var coldWithout = Time(without, "build", "-c", "Release");
        rows.Add(("cold build (restore, compile, compress)", coldWithout, coldWith));
        var noopWith = new List<double>();
        var noopWithout = new List<double>();
        var noRestoreWith = new List<double>();
        var noRestoreWithout = new List<double>();
        for (var i = 0; i < repeats; i++)
        {
            noopWithout.Add(Time(without, "build", "-c", "Release"));
            noopWith.Add(Time(with, "build", "-c", "Release"));
            noRestoreWithout.Add(Time(without, "build", "-c", "Release", "--no-restore"));
            noRestoreWith.Add(Time(with, "build", "-c", "Release", "--no-restore"));
        }

        rows.Add(($"no-op `dotnet build` (median of {repeats})", Median(noopWithout), Median(noopWith)));
        rows.Add(($"no-op `dotnet build --no-restore` (median of {repeats})", Median(noRestoreWithout), Median(noRestoreWith)));

        Console.WriteLine();
        Console.WriteLine($"samples/FashionClassifier, {Environment.ProcessorCount} cores; seconds");
        Console.WriteLine();
        Console.WriteLine("| build | without CompressModel | with CompressModel | ratio |");
        Console.WriteLine("| --- | ---: | ---: | ---: |");
        foreach (var (name, a, b) in rows)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {name} | {a:0.00} | {b:0.00} | {b / a:0.00}× |"));
        }

        Directory.Delete(work, recursive: true);
        var packages = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } p ? p : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        foreach (var id in new[] { "compress.build", "compress.runtime" })
        {
            Directory.Delete(Path.Combine(packages, id, version), recursive: true);
        }
        return 0;
    }

    private static string Copy(string sample, string target, string feed, string version, string data, string root, bool keepItem)
    {
        Directory.CreateDirectory(target);
        foreach (var file in new[] { "Program.cs", "fashion.compress.json", "Directory.Build.props", "Directory.Packages.props" })
        {
            File.Copy(Path.Combine(sample, file), Path.Combine(target, file));
        }

        var project = File.ReadAllText(Path.Combine(sample, "FashionClassifier.csproj"))
            .Replace("$(CompressBuildVersion)", version, StringComparison.Ordinal)
            .Replace("../../models/fashion_mlp.onnx", Path.Combine(root, "models", "fashion_mlp.onnx"), StringComparison.Ordinal);
        if (!keepItem)
        {
            // The same app with no CompressModel item: it ships the model as content and calls ONNX Runtime itself.
            project = string.Join('\n', project.Split('\n').Select(l => l.Contains("<CompressModel ", StringComparison.Ordinal)
                ? $"    <None Include=\"{Path.Combine(root, "models", "fashion_mlp.onnx")}\" Link=\"fashion_mlp.onnx\" CopyToOutputDirectory=\"PreserveNewest\" />"
                : l));
            File.WriteAllText(Path.Combine(target, "Program.cs"), """
                using Microsoft.ML.OnnxRuntime;
                using var session = new InferenceSession(Path.Combine(AppContext.BaseDirectory, "fashion_mlp.onnx"));
                using var input = OrtValue.CreateTensorValueFromMemory(new float[784], [1, 784]);
                using var output = session.Run(new RunOptions(), ["input"], [input], ["logits"]);
                Console.WriteLine(output[0].GetTensorDataAsSpan<float>()[0]);
                """);
        }

        File.WriteAllText(Path.Combine(target, "FashionClassifier.csproj"), project);
        File.WriteAllText(Path.Combine(target, "fashion.compress.json"), File.ReadAllText(Path.Combine(target, "fashion.compress.json"))
            .Replace("\"data/", "\"" + data.Replace("\\", "\\\\", StringComparison.Ordinal) + "/", StringComparison.Ordinal));
        File.WriteAllText(Path.Combine(target, "NuGet.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration><packageSources><add key="bench" value="{feed}" /></packageSources></configuration>
            """);
        return target;
    }

    private static double Time(string folder, params string[] args)
    {
        var watch = Stopwatch.StartNew();
        Dotnet(folder, args);
        return watch.Elapsed.TotalSeconds;
    }

    private static double Median(List<double> values) => values.Order().ElementAt(values.Count / 2);

    private static void Dotnet(string folder, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { WorkingDirectory = folder, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"dotnet {string.Join(' ', args)} in {folder} failed:\n{output.Result}{error.Result}");
        }
    }
}
