using Microsoft.ML.OnnxRuntime;

namespace Compress.Runtime;

/// <summary>How a generated wrapper opens its model. The defaults suit a desktop or server app on the CPU.</summary>
public sealed class ModelOptions
{
    /// <summary>Threads inside one operator; 0 lets ONNX Runtime choose (one per physical core).</summary>
    public int IntraOpThreads { get; init; }

    /// <summary>Threads across independent operators; 0 lets ONNX Runtime choose.</summary>
    public int InterOpThreads { get; init; }

    /// <summary><c>cpu</c> (the only provider the shipped ONNX Runtime package has).</summary>
    public string ExecutionProvider { get; init; } = "cpu";

    /// <summary>ONNX Runtime's graph optimizations (all by default; they fuse the quantized patterns).</summary>
    public GraphOptimizationLevel OptimizationLevel { get; init; } = GraphOptimizationLevel.ORT_ENABLE_ALL;

    /// <summary>Last word on the session options (custom providers, profiling, …), called after the settings above.</summary>
    public Action<SessionOptions>? Configure { get; init; }
}
