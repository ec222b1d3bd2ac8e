// Compiled into every test project (tests/Directory.Build.props): where the repository is, and the running .NET's
// own assemblies for tests that compile C# in memory.
namespace Compress.Tests.Shared;

internal static class Repository
{
    /// <summary>The folder holding Compress.Build.sln, found upwards from the test assembly.</summary>
    public static string Root { get; } = FindRoot();

    public static string Path(params string[] parts) => System.IO.Path.Combine([Root, .. parts]);

    /// <summary>System.*, netstandard and mscorlib from the running runtime: references for in-memory compilations.</summary>
    public static IReadOnlyList<string> PlatformAssemblies { get; } =
        ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(System.IO.Path.PathSeparator)
        .Where(p => System.IO.Path.GetFileName(p).StartsWith("System.", StringComparison.Ordinal) || System.IO.Path.GetFileName(p) is "netstandard.dll" or "mscorlib.dll")
        .ToList();

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(System.IO.Path.Combine(dir.FullName, "Compress.Build.sln")))
            {
                return dir.FullName;
            }
        }

        throw new DirectoryNotFoundException("repository root (Compress.Build.sln) not found above " + AppContext.BaseDirectory);
    }
}
