using Compress.Spec.Manifest;

namespace Compress.Cli.Tests;

public sealed class BatchCommandTests : CliTest
{

    [Fact]
    public void A_failed_job_writes_nothing_and_the_others_still_run()
    {
        var mlp = Mlp;
        File.WriteAllText(Path.Combine(Dir, "good.json"), """{ "steps": [ { "quantize": { "weights": "fp16" } } ] }""");
        File.WriteAllText(Path.Combine(Dir, "bad.json"), "{ \"steps\": [\n  { \"prune\": { \"sparsity\": 2 } } ] }");
        var jobs = Path.Combine(Dir, "jobs.json");
        File.WriteAllText(jobs, $$"""
            { "jobs": [
              { "model": "{{mlp}}", "spec": "bad.json", "output": "out/bad.onnx", "reports": ["out/bad.json"], "manifest": "out/bad.manifest.json" },
              { "model": "{{mlp}}", "spec": "good.json", "output": "out/good.onnx", "reports": ["out/good.json", "out/good.md"],
                "manifest": "out/good.manifest.json", "name": "Good", "namespace": "N", "artifactPath": "Models/good.onnx" }
            ] }
            """);
        var (code, stdout, stderr) = Run("batch", jobs, "--no-latency");
        Assert.Equal(1, code);
        Assert.Contains($"{Path.Combine(Dir, "bad.json")}(2,28): error CMP0103:", stderr, StringComparison.Ordinal);
        Assert.Contains("good.onnx: ", stdout, StringComparison.Ordinal);
        Assert.Equal(["good.json", "good.manifest.json", "good.md", "good.onnx"],
            Directory.GetFiles(Path.Combine(Dir, "out")).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        var manifest = ManifestJson.Read(File.ReadAllText(Path.Combine(Dir, "out", "good.manifest.json")), "m");
        Assert.Equal(("Good", "N", "Models/good.onnx", true), (manifest.Name, manifest.Namespace, manifest.ArtifactPath, manifest.Compressed));
        Assert.Contains(manifest.Operators, o => o.Op == "Cast" && o.ElementTypes.SequenceEqual(["float", "float16"]));
    }

    /// <summary>
    /// An output folder that is a file makes the write fail with an IOException, which no Compress code turns into a
    /// diagnostic: the job ends with CMP0099 at its model, and the next job still runs.
    /// </summary>
    [Fact]
    public void An_unexpected_exception_in_a_job_is_CMP0099_at_its_model_and_the_next_job_still_runs()
    {
        var blocked = Path.Combine(Dir, "blocked.onnx");
        File.Copy(Mlp, blocked);
        File.WriteAllText(Path.Combine(Dir, "not-a-folder"), "a file where the output's folder should be");
        File.WriteAllText(Path.Combine(Dir, "fp16.json"), """{ "steps": [ { "quantize": { "weights": "fp16" } } ] }""");
        var jobs = Path.Combine(Dir, "jobs.json");
        File.WriteAllText(jobs, $$"""
            { "jobs": [
              { "model": "blocked.onnx", "spec": "fp16.json", "output": "not-a-folder/blocked.onnx", "reports": ["out/blocked.json"], "manifest": "out/blocked.manifest.json" },
              { "model": "{{Mlp}}", "spec": "fp16.json", "output": "out/good.onnx", "reports": ["out/good.json"], "manifest": "out/good.manifest.json" }
            ] }
            """);
        var (code, stdout, stderr) = Run("batch", jobs, "--no-latency");
        Assert.Equal(1, code);
        var diagnostics = stderr.Split('\n').Where(l => l.Contains(": error ", StringComparison.Ordinal)).ToList();
        Assert.StartsWith($"{blocked}: error CMP0099: internal error (IOException): ", Assert.Single(diagnostics), StringComparison.Ordinal);
        Assert.Contains("good.onnx: ", stdout, StringComparison.Ordinal);
        Assert.Equal(["good.json", "good.manifest.json", "good.onnx"],
            Directory.GetFiles(Path.Combine(Dir, "out")).Select(Path.GetFileName).Order(StringComparer.Ordinal));
    }

    [Theory]
    [InlineData("{ \"jobs\": 3 }", "the jobs file needs a 'jobs' array")]
    [InlineData("{ \"jobs\": [ { \"model\": \"m.onnx\", \"output\": \"o.onnx\" } ] }", "'spec' must be a non-empty string")]
    [InlineData("{ \"jobs\": [ ", "")]
    public void A_malformed_jobs_file_is_a_usage_error_at_its_location(string text, string message)
    {
        var jobs = Path.Combine(Dir, "jobs.json");
        File.WriteAllText(jobs, text);
        var (code, _, stderr) = Run("batch", jobs);
        Assert.Equal(1, code);
        Assert.Contains($"{jobs}(1,", stderr, StringComparison.Ordinal);
        Assert.Contains("error CMP0009: " + message, stderr, StringComparison.Ordinal);
    }
}
