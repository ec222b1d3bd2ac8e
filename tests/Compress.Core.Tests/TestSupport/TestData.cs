namespace Compress.Core.Tests.TestSupport;

/// <summary>
/// Where the third-party test inputs live. They are installed by <c>./build.sh setup</c> (Debian packages and
/// npm tarballs, cached under .cache/); a missing input fails the test with that instruction — never a skip.
/// </summary>
public static class TestData
{
    public static string RepoRoot => Compress.Tests.Shared.Repository.Root;

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
}
