using System.CommandLine;
using Compress.Core.Diagnostics;
using Compress.Core.Reports;
using Compress.Spec;
using Compress.Spec.Manifest;

namespace Compress.Cli;

/// <summary>
/// <c>compress batch &lt;jobs.json&gt;</c>: several <c>run</c>s in one process (ONNX Runtime and libtorch load once), as
/// the MSBuild task asks for all out-of-date models of a project. A failed job prints its diagnostics and writes
/// nothing; the others go on, also after an unexpected exception (CMP0099 at the job's model), so one bug in one
/// model's path does not leave the project's other models uncompressed. Exit code 1 when any job failed. The jobs
/// file is documented in docs/cli/batch.md.
/// </summary>
internal static class BatchCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var jobsFile = new Argument<FileInfo>("jobs") { Description = "The jobs file (JSON), written by the Compress.Build MSBuild task." };
        var noLatency = new Option<bool>("--no-latency") { Description = "Skip the latency measurement." };
        var command = new Command("batch", "Compress several models, each with its spec, output, reports and manifest.") { jobsFile, noLatency };
        command.SetAction(parse =>
        {
            var jobs = Read(parse.GetValue(jobsFile)!.FullName);
            var progress = new ProgressLog(stderr);
            var failed = 0;
            foreach (var job in jobs)
            {
                try
                {
                    progress.Report($"{job.Model} -> {job.Output}");
                    RunCommand.Compress(job.Model, job.Spec, job.Output, job.Reports, job.Manifest, job.Identity, !parse.GetValue(noLatency), progress, stdout, job.References);
                }
                catch (CompressException e)
                {
                    stderr.WriteLine(e.Diagnostic);
                    failed++;
                }
                catch (Exception e) when (CompressCommand.IsInternalError(e))
                {
                    stderr.WriteLine(CompressCommand.InternalError(e, job.Model));
                    failed++;
                }
            }

            return failed == 0 ? 0 : 1;
        });
        return command;
    }

    internal sealed record Job(string Model, string Spec, string Output, IReadOnlyList<string> Reports, string? Manifest, ManifestIdentity Identity, IReadOnlyList<string> References);

    internal static List<Job> Read(string path)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw CompressException.Error(DiagnosticCodes.CommandLineUsage, $"cannot read the jobs file: {e.Message}", path);
        }

        JsonNode root;
        try
        {
            root = JsonParser.Parse(text, path);
        }
        catch (SpecException e)
        {
            throw CompressException.Error(DiagnosticCodes.CommandLineUsage, e.Message, path, e.Line, e.Column);
        }

        var baseDirectory = Path.GetDirectoryName(path)!;
        string Text(JsonNode item, string key, bool required = true)
        {
            var node = item[key];
            if (node is null && !required)
            {
                return "";
            }

            if (node is not { Kind: JsonKind.String } || string.IsNullOrEmpty(node.Text))
            {
                var at = node ?? item;
                throw CompressException.Error(DiagnosticCodes.CommandLineUsage, $"'{key}' must be a non-empty string", path, at.Line, at.Column);
            }

            return node.Text;
        }

        string FullPath(JsonNode item, string key) => Path.GetFullPath(Path.Combine(baseDirectory, Text(item, key)));

        if (root["jobs"] is not { Kind: JsonKind.Array } list)
        {
            throw CompressException.Error(DiagnosticCodes.CommandLineUsage, "the jobs file needs a 'jobs' array", path, root.Line, root.Column);
        }

        return list.Items.Select(item =>
        {
            var output = FullPath(item, "output");
            var name = Text(item, "name", required: false);
            var identity = new ManifestIdentity(
                name.Length > 0 ? name : WrapperNames.FromFileName(output),
                Text(item, "namespace", required: false) is { Length: > 0 } ns ? ns : null,
                item["generateWrapper"] is not { Kind: JsonKind.Boolean, Boolean: false },
                Text(item, "artifactPath", required: false) is { Length: > 0 } artifact ? artifact : Path.GetFileName(output));
            var reports = item["reports"] is { Kind: JsonKind.Array } r
                ? r.Items.Select(i => Path.GetFullPath(Path.Combine(baseDirectory, i.Text ?? ""))).ToList()
                : [];
            var references = item["references"] is { Kind: JsonKind.Array } refs
                ? refs.Items.Select(i => i is { Kind: JsonKind.String, Text.Length: > 0 }
                    ? Path.GetFullPath(Path.Combine(baseDirectory, i.Text))
                    : throw CompressException.Error(DiagnosticCodes.CommandLineUsage, "each of 'references' must be a non-empty string (an assembly file)", path, i.Line, i.Column)).ToList()
                : [];
            return new Job(FullPath(item, "model"), FullPath(item, "spec"), output, reports,
                item["manifest"] is null ? null : FullPath(item, "manifest"), identity, references);
        }).ToList();
    }
}
