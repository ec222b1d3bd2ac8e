using Xunit.Abstractions;

namespace Compress.Build.Tests;

/// <summary>
/// The compress CLI as a .NET tool: packed (Compress.Cli) into the fixture's feed, installed with
/// `dotnet tool install` the way a user would, and run from the installed shim, so the tool package holds everything
/// the command needs (ONNX Runtime, and libtorch found and loaded from the tool's own folder).
/// </summary>
[Collection(PackageCollection.Name)]
public sealed class ToolInstallTests(PackageFixture package, ITestOutputHelper output)
{
    [Fact]
    public void The_installed_tool_compresses_an_onnx_model_and_a_torchscript_model()
    {
        package.PackTool();
        var folder = Path.Combine(package.Root, "tool-" + Guid.NewGuid().ToString("N")[..8]);
        var tools = Path.Combine(folder, "tools");
        Directory.CreateDirectory(folder);

        // A NuGet cache of its own: no copy of this version from elsewhere can stand in for the fresh pack.
        var environment = new Dictionary<string, string> { ["NUGET_PACKAGES"] = Path.Combine(folder, "packages") };
        var install = Run("dotnet", folder, environment,
            "tool", "install", "Compress.Cli", "--tool-path", tools, "--add-source", package.Feed, "--version", package.Version);
        Assert.True(install.ExitCode == 0, install.Output);
        var compress = Path.Combine(tools, OperatingSystem.IsWindows() ? "compress.exe" : "compress");
        Assert.True(File.Exists(compress), install.Output);

        var spec = Path.Combine(folder, "mlp.compress.json");
        File.WriteAllText(spec, package.Spec());
        var onnx = Path.Combine(folder, "out", "fashion_mlp.int8.onnx");
        var run = Run(compress, folder, environment, "run", PackageFixture.MlpModel, "--spec", spec, "--output", onnx, "--no-latency");
        Assert.True(run.ExitCode == 0, run.Output);
        Assert.True(File.Exists(onnx), run.Output);
        Assert.True(new FileInfo(onnx).Length < new FileInfo(PackageFixture.MlpModel).Length, $"{new FileInfo(onnx).Length} bytes");

        // A TorchScript archive is read and written by libtorch: the tool must load it from its own folder.
        var torchScript = Path.Combine(PackageFixture.RepoRoot, "tests", "fixtures", "torchscript", "ts_mlp.pt");
        var tsSpec = Path.Combine(folder, "ts.compress.json");
        File.WriteAllText(tsSpec, """{ "steps": [ { "quantize": { "weights": "int8", "activations": "none" } } ] }""");
        var pt = Path.Combine(folder, "out", "ts_mlp.int8.pt");
        var ts = Run(compress, folder, environment, "run", torchScript, "--spec", tsSpec, "--output", pt, "--no-latency");
        Assert.True(ts.ExitCode == 0, ts.Output);
        Assert.True(File.Exists(pt), ts.Output);
        Assert.True(new FileInfo(pt).Length < new FileInfo(torchScript).Length, $"{new FileInfo(pt).Length} bytes");
    }

    private DotnetResult Run(string program, string folder, IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        var result = PackageFixture.Execute(program, folder, environment, args);
        output.WriteLine($"$ {program} {string.Join(' ', args)}  (exit {result.ExitCode})");
        output.WriteLine(result.Output);
        return result;
    }
}
