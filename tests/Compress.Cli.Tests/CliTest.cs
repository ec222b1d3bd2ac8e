namespace Compress.Cli.Tests;

/// <summary>Base of the CLI tests: a temporary folder per test, the command run in-process, the repository's models.</summary>
public abstract class CliTest : IDisposable
{
    protected CliTest() => Directory.CreateDirectory(Dir);

    protected string Dir { get; } = Path.Combine(Path.GetTempPath(), "compress-cli-tests", Guid.NewGuid().ToString("N"));

    protected static string Mlp => Compress.Tests.Shared.Repository.Path("models", "fashion_mlp.onnx");

    public void Dispose()
    {
        Directory.Delete(Dir, recursive: true);
        GC.SuppressFinalize(this);
    }

    protected static (int Code, string Stdout, string Stderr) Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var code = CompressCommand.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }
}
