using System.Diagnostics;
using System.Globalization;
using System.Text;
using Compress.Core.Data;

namespace Compress.Build.Tests;

/// <summary>
/// Packs Compress.Build once, with a version no other run uses, into a temporary feed; makes consumer projects
/// that reference it; runs dotnet on them. The version's folder is removed from the NuGet cache afterwards.
/// The compress CLI's tool package (Compress.Cli, some 450 MB with every platform's libtorch) is packed into the
/// same feed only when a test asks for it (<see cref="PackTool"/>), so the other tests do not wait for it.
/// </summary>
public sealed class PackageFixture : IDisposable
{
    private readonly Lazy<string?> _toolPackError;

    public PackageFixture()
    {
        _toolPackError = new(() => Pack("Compress.Cli"), LazyThreadSafetyMode.ExecutionAndPublication);
        Root = Path.Combine(Path.GetTempPath(), "compress-build-e2e", Guid.NewGuid().ToString("N")[..12]);
        Feed = Path.Combine(Root, "feed");
        Directory.CreateDirectory(Feed);
        Version = string.Create(CultureInfo.InvariantCulture, $"0.1.0-e2e.{DateTime.UtcNow:yyyyMMddHHmmss}.{Environment.ProcessId}");
        foreach (var project in new[] { "Compress.Build", "Compress.Runtime", "Compress.Runtime.TorchSharp" })
        {
            if (Pack(project) is { } error)
            {
                throw new InvalidOperationException(error);
            }
        }

        Data = Path.Combine(Root, "data");
        Directory.CreateDirectory(Data);
        FashionMnist.WriteNpz(Path.Combine(Data, "test.npz"), test: true, [784], 2000);
        FashionMnist.WriteNpz(Path.Combine(Data, "calibration.npz"), test: false, [784], 256);
    }

    public string Root { get; }

    public string Feed { get; }

    public string Version { get; }

    /// <summary>Fashion-MNIST .npz files (<c>input</c> [n, 784], <c>labels</c>): test.npz (2,000), calibration.npz (256).</summary>
    public string Data { get; }

    public static string RepoRoot => Compress.Tests.Shared.Repository.Root;

    public static string MlpModel => Path.Combine(RepoRoot, "models", "fashion_mlp.onnx");

    public static string PackagesFolder =>
        Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } p ? p : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");

    /// <summary>A folder with a NuGet.config naming the feed and an empty Directory.Build.props (nothing inherited).</summary>
    public string NewWorkspace()
    {
        var folder = Path.Combine(Root, "ws-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "NuGet.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources>
                <add key="compress-e2e" value="{Feed}" />
              </packageSources>
            </configuration>
            """);
        File.WriteAllText(Path.Combine(folder, "Directory.Build.props"), "<Project />");
        File.WriteAllText(Path.Combine(folder, "Directory.Packages.props"), "<Project />");
        return folder;
    }

    /// <summary>A console app in <paramref name="folder"/>/<paramref name="name"/> with the model at Models/classifier.onnx.</summary>
    public string NewProject(string folder, string name, string items, string? spec = null, string program = "System.Console.WriteLine(\"hello\");\n")
    {
        var project = Path.Combine(folder, name);
        Directory.CreateDirectory(Path.Combine(project, "Models"));
        File.Copy(MlpModel, Path.Combine(project, "Models", "classifier.onnx"));
        File.WriteAllText(Path.Combine(project, name + ".csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <ImplicitUsings>enable</ImplicitUsings>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="Compress.Build" Version="{Version}" />
            {items}
              </ItemGroup>
            </Project>
            """);
        File.WriteAllText(Path.Combine(project, "Program.cs"), program);
        if (spec is not null)
        {
            File.WriteAllText(Path.Combine(project, "classifier.compress.json"), spec);
        }

        return project;
    }

    /// <summary>A spec: dynamic int8, checked on the fixture's test data.</summary>
    public string Spec(string extraSteps = "", string constraints = """{ "maxAccuracyDrop": 0.01 }""") => $$"""
        {
          "data": { "evaluation": { "path": {{Quote(Path.Combine(Data, "test.npz"))}}, "labels": "labels" } },
          "steps": [ {{extraSteps}}{ "quantize": { "weights": "int8", "activations": "dynamic" } } ],
          "constraints": {{constraints}}
        }
        """;

    /// <summary>Packs the Compress.Cli tool package into <see cref="Feed"/> (with <see cref="Version"/>) once; throws when packing fails.</summary>
    public void PackTool()
    {
        if (_toolPackError.Value is { } error)
        {
            throw new InvalidOperationException(error);
        }
    }

    public static string Quote(string path) => "\"" + path.Replace("\\", "\\\\", StringComparison.Ordinal) + "\"";

    public static DotnetResult Dotnet(string workingDirectory, params string[] args) => Execute("dotnet", workingDirectory, null, args);

    /// <summary>Runs <paramref name="program"/> (dotnet, or a tool it installed) with <paramref name="environment"/> added to the test host's, less its MSBuild and test-host variables.</summary>
    public static DotnetResult Execute(string program, string workingDirectory, IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        var start = new ProcessStartInfo(program) { WorkingDirectory = workingDirectory, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        // The test host's MSBuild variables would point the child build at this process's SDK state.
        foreach (var key in start.Environment.Keys.Where(k => k.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase) || k.StartsWith("VSTEST", StringComparison.OrdinalIgnoreCase)).ToList())
        {
            start.Environment.Remove(key);
        }

        start.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[key] = value;
        }

        using var process = Process.Start(start)!;
        var output = new StringBuilder();
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) { lock (output) { output.AppendLine(e.Data); } } };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) { lock (output) { output.AppendLine(e.Data); } } };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!process.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{program} {string.Join(' ', args)} ran over 5 minutes:\n{output}");
        }

        process.WaitForExit();
        return new DotnetResult(process.ExitCode, output.ToString());
    }

    public void Dispose()
    {
        try
        {
            foreach (var id in new[] { "compress.build", "compress.runtime", "compress.runtime.torchsharp", "compress.cli" })
            {
                var folder = Path.Combine(PackagesFolder, id, Version.ToLowerInvariant());
                if (Directory.Exists(folder))
                {
                    Directory.Delete(folder, recursive: true);
                }
            }

            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    /// <summary>Packs src/<paramref name="project"/> into the feed; null, or why it failed.</summary>
    private string? Pack(string project)
    {
        var pack = Dotnet(RepoRoot, "pack", Path.Combine(RepoRoot, "src", project, project + ".csproj"),
            "-c", "Release", "-o", Feed, $"-p:PackageVersion={Version}", "--nologo");
        return pack.ExitCode == 0 ? null : $"packing {project} failed:\n" + pack.Output;
    }
}

public sealed record DotnetResult(int ExitCode, string Output)
{
    public bool Compressed => Output.Contains("Compress.Build: compressing", StringComparison.Ordinal);

    public bool UpToDate => Output.Contains("up to date, nothing to compress", StringComparison.Ordinal);
}

[CollectionDefinition(Name)]
public sealed class PackageCollection : ICollectionFixture<PackageFixture>
{
    public const string Name = "Compress.Build package";
}
