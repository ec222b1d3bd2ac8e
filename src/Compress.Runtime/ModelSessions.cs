using Compress.Runtime.Packing;
using Microsoft.ML.OnnxRuntime;

namespace Compress.Runtime;

/// <summary>Session creation for generated wrappers.</summary>
public static class ModelSessions
{
    /// <summary>The artifact's full path: <paramref name="artifactPath"/> (as the build placed it) under the app's base directory.</summary>
    public static string Resolve(string artifactPath) =>
        Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, artifactPath.Replace('/', Path.DirectorySeparatorChar)));

    /// <summary>An ONNX Runtime session for the model at <paramref name="path"/> with <paramref name="options"/> (defaults when null).</summary>
    /// <remarks>A packed model (<c>.cpack</c>, recognised by its first bytes) is expanded in memory and the session opened from the bytes.</remarks>
    /// <exception cref="FileNotFoundException">The model file is not there (with the path looked at).</exception>
    /// <exception cref="PackedModelException">A packed model that is truncated, corrupt or of a newer format version.</exception>
    public static InferenceSession Create(string path, ModelOptions? options)
    {
        options ??= new ModelOptions();
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"The model file '{path}' does not exist. The build copies the compressed model next to the app; pass a path to Load to use another one.", path);
        }

        if (!string.Equals(options.ExecutionProvider, "cpu", StringComparison.OrdinalIgnoreCase))
        {
            throw new NotSupportedException($"Execution provider '{options.ExecutionProvider}' is not available here; use 'cpu', or add a provider yourself in ModelOptions.Configure.");
        }

        using var session = new SessionOptions
        {
            IntraOpNumThreads = options.IntraOpThreads,
            InterOpNumThreads = options.InterOpThreads,
            GraphOptimizationLevel = options.OptimizationLevel,
        };
        options.Configure?.Invoke(session);
        return PackedModel.IsPackedFile(path)
            ? new InferenceSession(PackedModel.Expand(File.ReadAllBytes(path), $"'{path}'"), session)
            : new InferenceSession(path, session);
    }
}
