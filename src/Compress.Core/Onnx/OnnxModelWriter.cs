using Compress.Core.Diagnostics;
using Compress.Core.Onnx.Proto;
using Google.Protobuf;

namespace Compress.Core.Onnx;

public enum ExternalDataMode
{
    /// <summary>Keep tensors where they are; move large ones out when the model would exceed protobuf's 2 GB limit.</summary>
    Auto,

    /// <summary>Every tensor of at least <see cref="OnnxWriteOptions.ExternalThreshold"/> bytes goes to the data file.</summary>
    Always,

    /// <summary>Everything embedded in one file (fails beyond 2 GB).</summary>
    Never,
}

public sealed record OnnxWriteOptions
{
    public ExternalDataMode ExternalData { get; init; } = ExternalDataMode.Auto;

    /// <summary>Tensors smaller than this stay embedded when data moves out (ONNX's own convention is 1 KiB).</summary>
    public long ExternalThreshold { get; init; } = 1024;

    /// <summary>Name of the data file, next to the model; default <c>&lt;model file name&gt;.data</c>.</summary>
    public string? ExternalDataFileName { get; init; }

    /// <summary>Largest model file written without external data. Protobuf's hard limit is 2 GiB.</summary>
    public long MaxEmbeddedBytes { get; init; } = int.MaxValue - (64L << 20);
}

/// <summary>
/// Writes a model to disk atomically: model and data file go to temporary files in the target folder and are
/// moved into place only when both are complete. External data is streamed from its source file in chunks,
/// so saving never holds a second copy of the weights. The model message is changed only for the duration
/// of the write (external references point at the new data file) and restored afterwards.
/// </summary>
internal static class OnnxModelWriter
{
    private const int Alignment = 4096; // page size, so the runtime can memory-map each tensor

    public static void Write(OnnxModel model, string path, OnnxWriteOptions options)
    {
        var fullPath = Path.GetFullPath(path);
        var directory = Path.GetDirectoryName(fullPath)!;
        Directory.CreateDirectory(directory);
        var dataFileName = options.ExternalDataFileName ?? Path.GetFileName(fullPath) + ".data";
        var dataPath = Path.Combine(directory, dataFileName);

        var tensors = TensorWalker.AllTensors(model.Proto).ToList();
        var toExternal = ChooseExternal(model, tensors, options, path);

        var tempModel = fullPath + $".{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
        var tempData = toExternal.Count > 0 ? dataPath + $".{Environment.ProcessId}.{Guid.NewGuid():N}.tmp" : null;
        var restore = new List<Action>();
        try
        {
            if (tempData is not null)
            {
                WriteDataFile(model, toExternal, tempData, dataFileName, restore);
            }

            InlineRemainingExternal(model, tensors, toExternal, restore);
            var size = model.Proto.CalculateSize();
            if (size < 0 || size > options.MaxEmbeddedBytes + (64L << 20))
            {
                throw CompressException.Error(DiagnosticCodes.ModelWriteFailed,
                    "the model is larger than protobuf's 2 GB limit even with its large tensors in external data", path);
            }

            using (var stream = new FileStream(tempModel, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                using var output = new CodedOutputStream(stream, leaveOpen: true);
                model.Proto.WriteTo(output);
                output.Flush();
                stream.Flush(flushToDisk: false);
            }

            if (tempData is not null)
            {
                File.Move(tempData, dataPath, overwrite: true);
            }

            File.Move(tempModel, fullPath, overwrite: true);
        }
        catch (IOException e)
        {
            throw CompressException.Error(DiagnosticCodes.ModelWriteFailed, $"cannot write the model: {e.Message}", path, inner: e);
        }
        catch (UnauthorizedAccessException e)
        {
            throw CompressException.Error(DiagnosticCodes.ModelWriteFailed, $"cannot write the model: {e.Message}", path, inner: e);
        }
        finally
        {
            for (var i = restore.Count - 1; i >= 0; i--)
            {
                restore[i]();
            }

            TryDelete(tempModel);
            if (tempData is not null)
            {
                TryDelete(tempData);
            }
        }
    }

    /// <summary>The tensors whose bytes go to the data file, in model order.</summary>
    private static List<TensorProto> ChooseExternal(OnnxModel model, List<TensorProto> tensors, OnnxWriteOptions options, string path)
    {
        switch (options.ExternalData)
        {
            case ExternalDataMode.Never:
                return [];
            case ExternalDataMode.Always:
                return tensors.Where(t => EmbeddableSize(model, t) >= options.ExternalThreshold && CanBeExternal(t)).ToList();
        }

        var chosen = tensors.Where(t => model.ExternalData.ContainsKey(t)).ToList();
        long embedded = tensors.Where(t => !model.ExternalData.ContainsKey(t)).Sum(t => EmbeddableSize(model, t));
        if (embedded <= options.MaxEmbeddedBytes)
        {
            return chosen;
        }

        // Too big for one protobuf: move the large tensors out, as ONNX's own tools do.
        var moved = tensors.Where(t => !model.ExternalData.ContainsKey(t) && CanBeExternal(t) && t.RawData.Length >= options.ExternalThreshold).ToList();
        embedded -= moved.Sum(t => (long)t.RawData.Length);
        if (embedded > options.MaxEmbeddedBytes)
        {
            throw CompressException.Error(DiagnosticCodes.ModelWriteFailed,
                $"the model's embedded data ({embedded} bytes) stays over 2 GB: tensors stored in typed fields cannot move to external data", path);
        }

        var set = new HashSet<TensorProto>(chosen.Concat(moved), ReferenceEqualityComparer.Instance);
        return tensors.Where(set.Contains).ToList();
    }

    private static bool CanBeExternal(TensorProto t) =>
        ExternalDataReference.IsExternal(t) || (t.HasRawData && t.DataType != (int)TensorProto.Types.DataType.String);

    private static long EmbeddableSize(OnnxModel model, TensorProto t) =>
        model.ExternalData.TryGetValue(t, out var reference) ? reference.Length : t.HasRawData ? t.RawData.Length : t.CalculateSize();

    private static void WriteDataFile(OnnxModel model, List<TensorProto> toExternal, string tempData, string dataFileName, List<Action> restore)
    {
        using var data = new FileStream(tempData, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
        foreach (var tensor in toExternal)
        {
            var padding = (int)((Alignment - data.Position % Alignment) % Alignment);
            if (padding > 0)
            {
                data.Write(new byte[padding]);
            }

            var offset = data.Position;
            long length;
            if (model.ExternalData.TryGetValue(tensor, out var source))
            {
                length = source.Length;
                CopyRange(source, data);
            }
            else
            {
                var raw = tensor.RawData;
                length = raw.Length;
                data.Write(raw.Span);
                tensor.ClearRawData();
                restore.Add(() => tensor.RawData = raw);
            }

            var savedEntries = tensor.ExternalData.ToList();
            var hadLocation = tensor.HasDataLocation;
            var savedLocation = tensor.DataLocation;
            tensor.ExternalData.Clear();
            tensor.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = dataFileName });
            tensor.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = offset.ToString(System.Globalization.CultureInfo.InvariantCulture) });
            tensor.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = length.ToString(System.Globalization.CultureInfo.InvariantCulture) });
            tensor.DataLocation = TensorProto.Types.DataLocation.External;
            restore.Add(() =>
            {
                tensor.ExternalData.Clear();
                tensor.ExternalData.Add(savedEntries);
                if (hadLocation)
                {
                    tensor.DataLocation = savedLocation;
                }
                else
                {
                    tensor.ClearDataLocation();
                }
            });
        }

        data.Flush(flushToDisk: false);
    }

    private static void CopyRange(ExternalDataReference source, Stream destination)
    {
        using var input = new FileStream(source.FullPath, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.SequentialScan);
        input.Seek(source.Offset, SeekOrigin.Begin);
        var buffer = new byte[1 << 20];
        var remaining = source.Length;
        while (remaining > 0)
        {
            var read = input.Read(buffer, 0, (int)Math.Min(buffer.Length, remaining));
            if (read == 0)
            {
                throw new IOException($"external data file '{source.Location}' ended early");
            }

            destination.Write(buffer, 0, read);
            remaining -= read;
        }
    }

    /// <summary>External tensors not going to the data file (mode Never) are embedded for this write.</summary>
    private static void InlineRemainingExternal(OnnxModel model, List<TensorProto> tensors, List<TensorProto> toExternal, List<Action> restore)
    {
        var keep = new HashSet<TensorProto>(toExternal, ReferenceEqualityComparer.Instance);
        foreach (var tensor in tensors)
        {
            if (keep.Contains(tensor) || !model.ExternalData.TryGetValue(tensor, out var source))
            {
                continue;
            }

            using var data = TensorData.Map(source);
            var savedEntries = tensor.ExternalData.ToList();
            var savedLocation = tensor.DataLocation;
            tensor.RawData = ByteString.CopyFrom(data.Span);
            tensor.ExternalData.Clear();
            tensor.ClearDataLocation();
            restore.Add(() =>
            {
                tensor.ClearRawData();
                tensor.ExternalData.Add(savedEntries);
                tensor.DataLocation = savedLocation;
            });
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            if (File.Exists(path))
            {
                File.Delete(path);
            }
        }
        catch (IOException)
        {
            // Best effort: a leftover *.tmp never replaces a real output.
        }
    }
}
