using System.IO.Compression;
using Compress.Core.Diagnostics;

namespace Compress.Core.Data;

/// <summary>Reads and writes named arrays: one .npy file (its name is the file name) or a .npz archive of them.</summary>
public static class ArrayFile
{
    public static IReadOnlyDictionary<string, NpyArray> Read(string path)
    {
        if (!File.Exists(path))
        {
            throw CompressException.Error(DiagnosticCodes.DataNotFound, "data file not found", path);
        }

        try
        {
            if (path.EndsWith(".npy", StringComparison.OrdinalIgnoreCase))
            {
                using var stream = File.OpenRead(path);
                var name = Path.GetFileNameWithoutExtension(path);
                return new Dictionary<string, NpyArray> { [name] = NpyFormat.Read(stream, name, path) };
            }

            using var zip = ZipFile.OpenRead(path);
            var arrays = new Dictionary<string, NpyArray>(StringComparer.Ordinal);
            foreach (var entry in zip.Entries.Where(e => e.FullName.EndsWith(".npy", StringComparison.Ordinal)).OrderBy(e => e.FullName, StringComparer.Ordinal))
            {
                var name = entry.FullName[..^4];
                using var stream = entry.Open();
                arrays[name] = NpyFormat.Read(stream, name, path);
            }

            if (arrays.Count == 0)
            {
                throw CompressException.Error(DiagnosticCodes.DataMalformed, "the .npz archive holds no .npy arrays", path);
            }

            return arrays;
        }
        catch (InvalidDataException e)
        {
            throw CompressException.Error(DiagnosticCodes.DataMalformed, $"not a readable .npy/.npz file: {e.Message}", path, inner: e);
        }
        catch (IOException e) when (e is not FileNotFoundException)
        {
            throw CompressException.Error(DiagnosticCodes.DataMalformed, $"cannot read the data file: {e.Message}", path, inner: e);
        }
    }

    /// <summary>Writes a .npz (deflate-compressed, deterministic entry order and timestamps) or, for one array, a .npy.</summary>
    public static void Write(string path, params NpyArray[] arrays)
    {
        var directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(directory);
        var temp = path + $".{Environment.ProcessId}.{Guid.NewGuid():N}.tmp"; // two writers of one path never share a temporary file
        try
        {
            using (var file = File.Create(temp))
            {
                if (path.EndsWith(".npy", StringComparison.OrdinalIgnoreCase))
                {
                    NpyFormat.Write(file, arrays.Single());
                }
                else
                {
                    using var zip = new ZipArchive(file, ZipArchiveMode.Create);
                    foreach (var array in arrays.OrderBy(a => a.Name, StringComparer.Ordinal))
                    {
                        var entry = zip.CreateEntry(array.Name + ".npy", CompressionLevel.Fastest);
                        entry.LastWriteTime = new DateTimeOffset(1980, 1, 1, 0, 0, 0, TimeSpan.Zero);
                        using var stream = entry.Open();
                        NpyFormat.Write(stream, array);
                    }
                }
            }

            File.Move(temp, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp))
            {
                File.Delete(temp);
            }
        }
    }
}
