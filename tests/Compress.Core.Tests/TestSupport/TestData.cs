namespace Compress.Core.Tests.TestSupport;

/// <summary>
/// Where the third-party test inputs live. They are installed by <c>./build.sh setup</c> (Debian packages and
/// npm tarballs, cached under .cache/); a missing input fails the test with that instruction — never a skip.
/// </summary>
public static class TestData
{
    public static string RepoRoot { get; } = FindRepoRoot();

    public static string OnnxNodeTests => Require(Environment.GetEnvironmentVariable("COMPRESS_ONNX_TESTDATA") ?? "/usr/share/libonnx-testdata/data",
        "ONNX test models (Debian package libonnx-testdata)");

    public static string NpmModels => Require(Environment.GetEnvironmentVariable("COMPRESS_TEST_MODELS") ?? Path.Combine(RepoRoot, ".cache", "models"),
        "npm test models");

    public static string NpmModel(string relative) => Require(Path.Combine(NpmModels, relative), $"npm test model {relative}");

    public static string NewTempDirectory()
    {
        var path = Path.Combine(Path.GetTempPath(), "compress-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(path);
        return path;
    }

    private static string Require(string path, string what)
    {
        if (!Directory.Exists(path) && !File.Exists(path))
        {
            throw new InvalidOperationException($"{what} not found at {path}. Run ./build.sh setup first.");
        }

        return path;
    }

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Compress.Build.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("Compress.Build.sln not found above the test assembly");
    }
}
