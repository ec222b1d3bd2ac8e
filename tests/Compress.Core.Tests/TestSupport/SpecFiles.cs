using Compress.Core.Spec;
using Compress.Spec;

namespace Compress.Core.Tests.TestSupport;

/// <summary>Writes a spec file into a folder and reads it back through the engine's loader.</summary>
public static class SpecFiles
{
    public static string Write(string folder, string json, string name = "spec.json")
    {
        Directory.CreateDirectory(folder);
        var path = Path.Combine(folder, name);
        File.WriteAllText(path, json);
        return path;
    }

    public static CompressionSpec Load(string folder, string json) => SpecLoader.Load(Write(folder, json));

    /// <summary>A JSON string literal for a path (escapes backslashes and quotes).</summary>
    public static string Quote(string path) => System.Text.Json.JsonSerializer.Serialize(path);
}
