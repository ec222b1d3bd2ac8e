using System.CommandLine;
using Compress.Core.Diagnostics;

namespace Compress.Cli;

/// <summary>
/// The command line. Every failure prints one line in the MSBuild canonical form
/// (<c>path(line,col): error CMP0123: message</c>) on standard error and exits with 1.
/// </summary>
public static class CompressCommand
{
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var root = new RootCommand("Compress ONNX and TorchSharp models: prune, quantize, pack; inspect and evaluate them.")
        {
            InspectCommand.Create(stdout),
            RunCommand.Create(stdout, stderr),
            EvalCommand.Create(stdout),
            BatchCommand.Create(stdout, stderr),
        };

        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var error in parse.Errors)
            {
                stderr.WriteLine(new CompressDiagnostic(DiagnosticCodes.CommandLineUsage, DiagnosticSeverity.Error, error.Message));
            }

            return 1;
        }

        try
        {
            return parse.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
        }
        catch (CompressException e)
        {
            stderr.WriteLine(e.Diagnostic);
            return 1;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            stderr.WriteLine(new CompressDiagnostic(DiagnosticCodes.InternalError, DiagnosticSeverity.Error,
                $"internal error ({e.GetType().Name}): {e.Message}. Please report this with the command line used."));
            return 1;
        }
    }
}
