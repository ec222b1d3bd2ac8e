using System.CommandLine;
using System.Globalization;
using Compress.Core;
using Compress.Core.Reports;
using Compress.Core.Spec;
using Compress.Spec.IO;
using Compress.Spec.Manifest;

namespace Compress.Cli;

/// <summary><c>compress run &lt;model&gt; --spec &lt;spec.json&gt; --output &lt;path&gt; [--report &lt;report.json|.md|.html&gt;]</c>.</summary>
internal static class RunCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var model = new Argument<FileInfo>("model") { Description = "The model to compress (never modified): ONNX (.onnx), a TorchSharp state dict (Module.save) or a TorchScript archive (torch.jit.save)." };
        var spec = new Option<FileInfo>("--spec") { Description = "The compression spec (JSON; schema: schemas/compress-spec.schema.json).", Required = true };
        var output = new Option<FileInfo>("--output", "-o") { Description = "Where to write the compressed model.", Required = true };
        var report = new Option<FileInfo[]>("--report") { Description = "Report file(s): .json for tools, .md or .html (self-contained, with charts) for people.", AllowMultipleArgumentsPerToken = true };
        var manifest = new Option<FileInfo>("--manifest") { Description = "Also write the build manifest (JSON: signature, operators, figures; docs/manifest.md)." };
        var noLatency = new Option<bool>("--no-latency") { Description = "Skip the latency measurement." };
        var references = new Option<FileInfo[]>("--reference") { Description = "Assemblies to find the spec's 'module' type in (a TorchSharp state dict's module class, 'Namespace.Type, Assembly').", AllowMultipleArgumentsPerToken = true };
        var command = new Command("run", "Compress a model according to a spec, validate it, and write it with a report.")
        {
            model, spec, output, report, manifest, noLatency, references,
        };
        command.SetAction(parse =>
        {
            var outputPath = parse.GetValue(output)!.FullName;
            Compress(parse.GetValue(model)!.FullName, parse.GetValue(spec)!.FullName, outputPath,
                (parse.GetValue(report) ?? []).Select(f => f.FullName).ToList(), parse.GetValue(manifest)?.FullName, ManifestIdentity.For(outputPath),
                !parse.GetValue(noLatency), new ProgressLog(stderr), stdout, (parse.GetValue(references) ?? []).Select(f => f.FullName).ToList());
            return 0;
        });
        return command;
    }

    /// <summary>One compression as `run` and each job of `batch` do it: spec, pipeline, reports, manifest, summary line.</summary>
    internal static void Compress(string model, string spec, string output, IReadOnlyList<string> reports, string? manifest,
        ManifestIdentity identity, bool measureLatency, ProgressLog progress, TextWriter stdout, IReadOnlyList<string> references)
    {
        foreach (var report in reports)
        {
            ReportWriter.FormatOf(report); // an unknown extension fails here, not after minutes of compression
        }

        var format = File.Exists(model) ? ModelFormats.Detect(model) : ModelFormats.Onnx;
        var loaded = SpecLoader.Load(spec);
        loaded.Module?.References.AddRange(references);
        var result = CompressionPipeline.Run(model, loaded, output, progress.Report, measureLatency, format);
        foreach (var warning in result.Warnings ?? [])
        {
            progress.Warn(warning);
        }

        foreach (var report in reports)
        {
            ReportWriter.Write(result, report);
        }

        if (manifest is not null)
        {
            AtomicFile.WriteAllText(manifest, ManifestJson.Write(ManifestFactory.Create(result, identity)));
        }

        stdout.WriteLine(Summary(result));
    }

    internal static string Summary(CompressionReport r)
    {
        var c = CultureInfo.InvariantCulture;
        var parts = new List<string>
        {
            string.Create(c, $"{Path.GetFileName(r.Output)}: {r.Size.CompressedBytes:N0} bytes ({r.Size.Ratio:0.000}x of {r.Size.OriginalBytes:N0})"),
        };
        if (r.Metrics is { } m)
        {
            if (m.OriginalAccuracy is { } a && m.CompressedAccuracy is { } b)
            {
                parts.Add(string.Create(c, $"accuracy {a:0.0000} -> {b:0.0000}"));
            }

            if (m.Agreement is { } agreement)
            {
                parts.Add(string.Create(c, $"agreement {agreement:0.0000}"));
            }

            if (m.MeanCosine is { } cosine && m.Agreement is null)
            {
                parts.Add(string.Create(c, $"cosine {cosine:0.0000} (1st percentile {m.P1Cosine:0.0000})"));
            }

            parts.Add(string.Create(c, $"SQNR {m.SqnrDb:0.0} dB"));
        }

        if (r.Latency is { } l)
        {
            parts.Add(string.Create(c, $"batch-1 latency {l.OriginalBatch1Ms:0.000} -> {l.CompressedBatch1Ms:0.000} ms"));
        }

        return string.Join(", ", parts);
    }
}

/// <summary>Progress lines on standard error, with elapsed time and the process's memory; the same on a terminal and in a build log.</summary>
internal sealed class ProgressLog(TextWriter writer)
{
    private readonly System.Diagnostics.Stopwatch _watch = System.Diagnostics.Stopwatch.StartNew();

    public void Report(string message) => writer.WriteLine(string.Create(CultureInfo.InvariantCulture, $"compress: [{_watch.Elapsed.TotalSeconds,6:0.0}s {Environment.WorkingSet >> 20,6} MB] {message}"));

    /// <summary>A warning in the canonical form, which the MSBuild task turns into a build warning.</summary>
    public void Warn(Core.Diagnostics.CompressDiagnostic warning) => writer.WriteLine(warning.ToString());
}
