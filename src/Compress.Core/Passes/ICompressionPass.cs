namespace Compress.Core.Passes;

/// <summary>One compression method: a transformation of the model IR chosen by name from the spec.</summary>
public interface ICompressionPass
{
    /// <summary>The spec's name for what this pass does, e.g. <c>prune/magnitude</c>, <c>quantize/static</c>.</summary>
    string Name { get; }

    void Apply(CompressionContext context);
}
