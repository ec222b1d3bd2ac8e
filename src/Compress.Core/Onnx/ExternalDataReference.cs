using System.Globalization;
using System.Runtime.InteropServices;
using Compress.Core.Diagnostics;
using Compress.Core.Onnx.Proto;

namespace Compress.Core.Onnx;

/// <summary>
/// Where a tensor's bytes live outside the model file: <c>location</c> relative to the model's folder,
/// <c>offset</c> and <c>length</c> in bytes. Created only through <see cref="Resolve"/>, which refuses any
/// location that would leave the model's folder before a single byte of it is read.
/// </summary>
public sealed record ExternalDataReference(string Location, string FullPath, long Offset, long Length)
{
    public static bool IsExternal(TensorProto tensor) =>
        tensor.HasDataLocation && tensor.DataLocation == TensorProto.Types.DataLocation.External;

    /// <summary>Reads and checks a tensor's external_data entries against the model folder.</summary>
    /// <param name="tensor">A tensor whose data_location is EXTERNAL.</param>
    /// <param name="baseDirectory">The folder of the model file (already a full path).</param>
    /// <param name="modelPath">The model file, for the error location.</param>
    public static ExternalDataReference Resolve(TensorProto tensor, string baseDirectory, string modelPath)
    {
        string? location = null;
        string? offsetText = null;
        string? lengthText = null;
        foreach (var entry in tensor.ExternalData)
        {
            switch (entry.Key)
            {
                case "location": location = entry.Value; break;
                case "offset": offsetText = entry.Value; break;
                case "length": lengthText = entry.Value; break;
            }
        }

        var name = string.IsNullOrEmpty(tensor.Name) ? "(unnamed)" : tensor.Name;
        if (string.IsNullOrEmpty(location))
        {
            throw Invalid(modelPath, $"tensor '{name}' is marked EXTERNAL but has no 'location' entry");
        }

        var fullPath = CheckLocation(location, baseDirectory, modelPath, name);
        var offset = ParseNonNegative(offsetText, "offset", modelPath, name) ?? 0;
        var fileLength = new FileInfo(fullPath).Length;
        var expected = ExpectedByteSize(tensor);
        var length = ParseNonNegative(lengthText, "length", modelPath, name) ?? expected ?? fileLength - offset;
        if (offset > fileLength || length > fileLength - offset)
        {
            throw Invalid(modelPath,
                $"tensor '{name}' reads bytes {offset}..{offset + length} of '{location}', which has only {fileLength} bytes");
        }

        if (expected is { } e && e != length)
        {
            throw Invalid(modelPath, $"tensor '{name}' needs {e} bytes for its shape and type but its external data length is {length}");
        }

        return new ExternalDataReference(location, fullPath, offset, length);
    }

    /// <summary>Bytes a dense tensor of fixed-width type takes, or null when the type has no fixed width.</summary>
    public static long? ExpectedByteSize(TensorProto tensor)
    {
        var bits = OnnxElementTypes.BitWidth(tensor.DataType);
        if (bits == 0 || tensor.Dims.Any(d => d < 0))
        {
            return null;
        }

        try
        {
            return OnnxElementTypes.ByteSize((TensorProto.Types.DataType)tensor.DataType, OnnxElementTypes.ElementCount(tensor.Dims));
        }
        catch (OverflowException)
        {
            return null;
        }
    }

    private static string CheckLocation(string location, string baseDirectory, string modelPath, string name)
    {
        // Checked as text first, so an unsafe location is refused without touching the file system there.
        if (location.Contains('\0') || Path.IsPathRooted(location) || location.StartsWith('/') || location.StartsWith('\\')
            || (location.Length >= 2 && location[1] == ':'))
        {
            throw Unsafe(modelPath, name, location, "is an absolute path");
        }

        var segments = location.Split('/', '\\');
        if (segments.Any(s => s == ".."))
        {
            throw Unsafe(modelPath, name, location, "climbs out with '..'");
        }

        var root = RealPath(baseDirectory) ?? baseDirectory;
        var fullPath = Path.GetFullPath(Path.Combine(baseDirectory, location));
        if (!IsInside(fullPath, Path.GetFullPath(baseDirectory)))
        {
            throw Unsafe(modelPath, name, location, "resolves outside the model's folder");
        }

        if (!File.Exists(fullPath))
        {
            throw Invalid(modelPath, $"tensor '{name}': external data file '{location}' does not exist");
        }

        // A link inside the folder may still point out of it: compare the real (link-free) paths.
        var real = RealPath(fullPath);
        if (real is null || !IsInside(real, root))
        {
            throw Unsafe(modelPath, name, location, "is a link that leads outside the model's folder");
        }

        return fullPath;
    }

    private static bool IsInside(string path, string directory)
    {
        var dir = directory.EndsWith(Path.DirectorySeparatorChar) ? directory : directory + Path.DirectorySeparatorChar;
        var comparison = OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
        return path.StartsWith(dir, comparison);
    }

    /// <summary>The canonical path with every link resolved, or null when it cannot be resolved.</summary>
    private static string? RealPath(string path)
    {
        if (OperatingSystem.IsWindows())
        {
            var info = new FileInfo(path);
            return info.LinkTarget is null ? Path.GetFullPath(path) : info.ResolveLinkTarget(true)?.FullName;
        }

        var result = NativeRealPath(path, IntPtr.Zero);
        if (result == IntPtr.Zero)
        {
            return null;
        }

        try
        {
            return Marshal.PtrToStringUTF8(result);
        }
        finally
        {
            NativeFree(result);
        }
    }

    [DllImport("libc", EntryPoint = "realpath", CharSet = CharSet.Ansi)]
    private static extern IntPtr NativeRealPath(string path, IntPtr resolved);

    [DllImport("libc", EntryPoint = "free")]
    private static extern void NativeFree(IntPtr pointer);

    private static long? ParseNonNegative(string? text, string key, string modelPath, string name)
    {
        if (text is null)
        {
            return null;
        }

        if (!long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value))
        {
            throw Invalid(modelPath, $"tensor '{name}': external data '{key}' is '{text}', not a non-negative integer");
        }

        return value;
    }

    private static CompressException Unsafe(string modelPath, string name, string location, string why) =>
        CompressException.Error(DiagnosticCodes.ExternalDataUnsafePath,
            $"tensor '{name}': external data location '{location}' {why}; external data must stay inside the model's folder",
            modelPath);

    private static CompressException Invalid(string modelPath, string message) =>
        CompressException.Error(DiagnosticCodes.ExternalDataInvalid, message, modelPath);
}
