namespace Compress.Runtime.Packing;

/// <summary>
/// A packed model (<c>.cpack</c>) that cannot be expanded: not a packed file, a version this runtime does not read,
/// truncated, or corrupt (its checksum or a record does not hold). Nothing is loaded from such a file.
/// </summary>
public sealed class PackedModelException : IOException
{
    /// <summary>An exception saying why the file cannot be expanded.</summary>
    public PackedModelException(string message, Exception? inner = null)
        : base(message, inner)
    {
    }
}
