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
        catch (Exception e) when (IsInternalError(e))
        {
            stderr.WriteLine(InternalError(e));
            return 1;
        }
    }

    /// <summary>An exception that is a bug to report rather than a user error; out-of-memory is left to end the process.</summary>
    internal static bool IsInternalError(Exception e) => e is not CompressException and not OutOfMemoryException;

    /// <summary>CMP0099 for an unexpected exception, located at <paramref name="file"/> (a batch job's model) when given.</summary>
    internal static CompressDiagnostic InternalError(Exception e, string? file = null) =>
        new(DiagnosticCodes.InternalError, DiagnosticSeverity.Error,
            $"internal error ({e.GetType().Name}): {e.Message.TrimEnd('.')}. Please report this with the command line used.", file);
}
