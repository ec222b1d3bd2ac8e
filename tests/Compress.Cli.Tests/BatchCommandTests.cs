using Compress.Spec.Manifest;

namespace Compress.Cli.Tests;

public sealed class BatchCommandTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "compress-cli-tests", Guid.NewGuid().ToString("N"));

    public BatchCommandTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void A_failed_job_writes_nothing_and_the_others_still_run()
    {
        var mlp = Path.Combine(RepoRoot(), "models", "fashion_mlp.onnx");
        File.WriteAllText(Path.Combine(_dir, "good.json"), """{ "steps": [ { "quantize": { "weights": "fp16" } } ] }""");
        File.WriteAllText(Path.Combine(_dir, "bad.json"), "{ \"steps\": [\n  { \"prune\": { \"sparsity\": 2 } } ] }");
        var jobs = Path.Combine(_dir, "jobs.json");
        File.WriteAllText(jobs, $$"""
            { "jobs": [
              { "model": "{{mlp}}", "spec": "bad.json", "output": "out/bad.onnx", "reports": ["out/bad.json"], "manifest": "out/bad.manifest.json" },
              { "model": "{{mlp}}", "spec": "good.json", "output": "out/good.onnx", "reports": ["out/good.json", "out/good.md"],
                "manifest": "out/good.manifest.json", "name": "Good", "namespace": "N", "artifactPath": "Models/good.onnx" }
            ] }
            """);
        var (code, stdout, stderr) = Run("batch", jobs, "--no-latency");
        Assert.Equal(1, code);
        Assert.Contains($"{Path.Combine(_dir, "bad.json")}(2,28): error CMP0103:", stderr, StringComparison.Ordinal);
        Assert.Contains("good.onnx: ", stdout, StringComparison.Ordinal);
        Assert.Equal(["good.json", "good.manifest.json", "good.md", "good.onnx"],
            Directory.GetFiles(Path.Combine(_dir, "out")).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        var manifest = ManifestJson.Read(File.ReadAllText(Path.Combine(_dir, "out", "good.manifest.json")), "m");
        Assert.Equal(("Good", "N", "Models/good.onnx", true), (manifest.Name, manifest.Namespace, manifest.ArtifactPath, manifest.Compressed));
        Assert.Contains(manifest.Operators, o => o.Op == "Cast" && o.ElementTypes.SequenceEqual(["float", "float16"]));
    }

    [Theory]
    [InlineData("{ \"jobs\": 3 }", "the jobs file needs a 'jobs' array")]
    [InlineData("{ \"jobs\": [ { \"model\": \"m.onnx\", \"output\": \"o.onnx\" } ] }", "'spec' must be a non-empty string")]
    [InlineData("{ \"jobs\": [ ", "")]
    public void A_malformed_jobs_file_is_a_usage_error_at_its_location(string text, string message)
    {
        var jobs = Path.Combine(_dir, "jobs.json");
        File.WriteAllText(jobs, text);
        var (code, _, stderr) = Run("batch", jobs);
        Assert.Equal(1, code);
        Assert.Contains($"{jobs}(1,", stderr, StringComparison.Ordinal);
        Assert.Contains("error CMP0009: " + message, stderr, StringComparison.Ordinal);
    }

    private static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Compress.Build.sln")))
            {
                return dir.FullName;
            }
        }

        throw new DirectoryNotFoundException("repository root");
    }

    private static (int Code, string Stdout, string Stderr) Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var code = CompressCommand.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }
}
