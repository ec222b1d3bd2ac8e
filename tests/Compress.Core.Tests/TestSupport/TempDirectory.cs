namespace Compress.Core.Tests.TestSupport;

/// <summary>A fresh folder per test class instance, deleted when the test ends.</summary>
public abstract class TempDirectoryTest : IDisposable
{
    protected string Dir { get; } = TestData.NewTempDirectory();

    public void Dispose() => Directory.Delete(Dir, recursive: true);
}
