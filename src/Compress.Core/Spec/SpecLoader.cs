using Compress.Core.Diagnostics;
using Compress.Spec;

namespace Compress.Core.Spec;

/// <summary>Reads a spec file and turns its problems into engine diagnostics (same code, file, line, column).</summary>
public static class SpecLoader
{
    public static CompressionSpec Load(string path)
    {
        try
        {
            return SpecReader.ReadFile(path);
        }
        catch (SpecException e)
        {
            throw CompressException.Error(e.Code, e.Message, e.File, e.Line, e.Column, e);
        }
    }

    public static CompressException At(CompressionSpec spec, int line, int column, string code, string message) =>
        CompressException.Error(code, message, spec.File, line, column);
}
