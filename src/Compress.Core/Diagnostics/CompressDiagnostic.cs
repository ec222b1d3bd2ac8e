using System.Text.Json.Serialization;

namespace Compress.Core.Diagnostics;

[JsonConverter(typeof(JsonStringEnumConverter<DiagnosticSeverity>))]
public enum DiagnosticSeverity
{
    Warning,
    Error,
}

/// <summary>
/// One problem, located in a file. <see cref="ToString"/> gives the MSBuild canonical form
/// (<c>path(line,col): error CMP0123: message</c>) so terminals and the build task show it the same way.
/// Binary inputs (models, data files) have no line; their location is the path alone.
/// </summary>
public sealed record CompressDiagnostic(
    string Code,
    DiagnosticSeverity Severity,
    string Message,
    string? File = null,
    int Line = 0,
    int Column = 0)
{
    public static CompressDiagnostic Warning(string code, string message, string? file = null) => new(code, DiagnosticSeverity.Warning, message, file);

    public override string ToString()
    {
        var severity = Severity == DiagnosticSeverity.Error ? "error" : "warning";
        var location = File is null ? "compress" : Line > 0 ? $"{File}({Line},{Math.Max(Column, 1)})" : File;
        return $"{location}: {severity} {Code}: {Message}";
    }
}

/// <summary>An error the user can act on; carries its diagnostic (code, location, message).</summary>
public sealed class CompressException : Exception
{
    public CompressException(CompressDiagnostic diagnostic, Exception? inner = null)
        : base(diagnostic.ToString(), inner)
    {
        Diagnostic = diagnostic;
    }

    public CompressDiagnostic Diagnostic { get; }

    public static CompressException Error(string code, string message, string? file = null, int line = 0, int column = 0, Exception? inner = null) =>
        new(new CompressDiagnostic(code, DiagnosticSeverity.Error, message, file, line, column), inner);
}
