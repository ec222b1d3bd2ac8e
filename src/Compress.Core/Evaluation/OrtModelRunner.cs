using Compress.Core.Calibration;
using Compress.Core.Data;
using Compress.Core.Onnx;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace Compress.Core.Evaluation;

/// <summary>
/// Runs a model in ONNX Runtime over a <see cref="CalibrationSet"/> in batches. The session is created from the
/// model's bytes in memory; only a model with external data (which ONNX Runtime resolves next to a file) is written
/// to a private temporary folder first, deleted on dispose.
/// </summary>
public sealed class OrtModelRunner : IDisposable
{
    private readonly string? _folder;
    private readonly InferenceSession _session;

    /// <param name="optimize">
    /// False only checks that the model loads (kernels found, graph valid) without ONNX Runtime's graph optimizations:
    /// constant-folding a large bitmask-packed model would briefly hold several dense copies of its weights.
    /// </param>
    /// <param name="arena">
    /// Whether the session runs as an app's would — with ONNX Runtime's CPU memory arena (which grows to the largest
    /// batch and never shrinks) and prepacked weights: wanted when timing, not when several sessions of a large model
    /// compare or calibrate side by side.
    /// </param>
    public OrtModelRunner(OnnxModel model, int threads = 1, bool optimize = true, bool arena = false)
        : this(model, null, threads, optimize, arena)
    {
    }

    private OrtModelRunner(OnnxModel? model, string? file, int threads, bool optimize, bool arena, string? profile = null)
    {
        if (model?.IsInterface == true)
        {
            throw new InvalidOperationException("a model loaded without its weights (OnnxModel.LoadInterface) runs from its file");
        }

        using var options = new SessionOptions
        {
            EnableCpuMemArena = arena,
            GraphOptimizationLevel = optimize ? GraphOptimizationLevel.ORT_ENABLE_ALL : GraphOptimizationLevel.ORT_DISABLE_ALL,
            EnableMemoryPattern = optimize,
            IntraOpNumThreads = threads,
            InterOpNumThreads = 1,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR,
        };
        if (profile is not null)
        {
            options.EnableProfiling = true;
            options.ProfileOutputPathPrefix = profile;
        }

        if (!arena)
        {
            // Kernel-ready (prepacked) copies of the weights double a session's memory; only timing needs them.
            options.AddSessionConfigEntry("session.disable_prepacking", "1");
        }

        if (file is not null)
        {
            _session = new InferenceSession(file, options);
        }
        else if (model!.ExternalData.Count == 0 && model.Proto.CalculateSize() is > 0 and < int.MaxValue - (64 << 20))
        {
            _session = new InferenceSession(model.Proto.ToByteArray(), options);
        }
        else
        {
            _folder = Path.Combine(Path.GetTempPath(), "compress-run", Guid.NewGuid().ToString("N"));
            var path = Path.Combine(_folder, "model.onnx");
            try
            {
                model.Save(path);
                _session = new InferenceSession(path, options);
            }
            catch
            {
                Directory.Delete(_folder, recursive: true);
                throw;
            }
        }

        OutputNames = _session.OutputNames.ToArray();
    }

    /// <summary>
    /// A runner of a model file as it is on disk (never one changed in memory): ONNX Runtime reads it itself, so no
    /// serialized copy of a large model passes through the managed heap.
    /// </summary>
    public static OrtModelRunner FromFile(string path, bool arena = false) => new(null, path, 1, true, arena);

    /// <summary>
    /// A timing runner of a model file (as <see cref="FromFile"/> with the arena) with ONNX Runtime's profiler on, writing
    /// its JSON under <paramref name="prefix"/>; <see cref="EndProfiling"/> gives the file.
    /// </summary>
    public static OrtModelRunner Profiled(string path, string prefix) => new(null, path, 1, true, arena: true, prefix);

    /// <summary>Stops the profiler of a <see cref="Profiled"/> runner and returns the path of its JSON trace.</summary>
    public string EndProfiling() => _session.EndProfiling();

    public IReadOnlyList<string> OutputNames { get; }

    /// <summary>The element type ONNX Runtime gives an output (<c>float</c>, <c>int8</c>…), or null for a non-tensor.</summary>
    public string? OutputElementType(string name) =>
        _session.OutputMetadata.TryGetValue(name, out var meta) && meta.IsTensor ? Compress.Spec.Onnx.OnnxTypeNames.Name((int)meta.ElementDataType) : null;

    /// <summary>The shapes <paramref name="values"/> take on the first sample of <paramref name="data"/> (tensors only; one run).</summary>
    public static Dictionary<string, long[]> Shapes(OnnxModel model, CalibrationSet data, IReadOnlyCollection<string> values)
    {
        var shapes = new Dictionary<string, long[]>(StringComparer.Ordinal);
        var names = values.Distinct(StringComparer.Ordinal).ToArray();
        if (names.Length == 0)
        {
            return shapes;
        }

        using var runner = Exposing(model, names);
        using var results = runner.RunBatch(data, 0, 1, names);
        foreach (var (name, value) in names.Zip(results))
        {
            if (value.IsTensor)
            {
                shapes[name] = value.GetTensorTypeAndShape().Shape;
            }
        }

        return shapes;
    }

    /// <summary>
    /// A runner whose model also outputs the intermediate <paramref name="tensors"/> (for calibration and
    /// measurement). The model itself is left as it was.
    /// </summary>
    public static OrtModelRunner Exposing(OnnxModel model, IEnumerable<string> tensors)
    {
        var graph = model.Graph.Proto;
        var added = tensors.Where(t => !model.Graph.IsGraphOutput(t)).Distinct().Select(t => new Onnx.Proto.ValueInfoProto { Name = t }).ToList();
        graph.Output.Add(added);
        try
        {
            return new OrtModelRunner(model);
        }
        finally
        {
            foreach (var output in added)
            {
                graph.Output.Remove(output);
            }
        }
    }

    /// <summary>
    /// A runner of only the part of <paramref name="model"/> that computes the intermediate <paramref name="tensors"/>,
    /// which are its only outputs (<see cref="OnnxModel.Part"/>): ONNX Runtime runs every node of a session whatever
    /// outputs a run asks for, so measuring an early layer's inputs through <see cref="Exposing"/> runs the whole model
    /// (on PP-OCRv4 rec, 6.5 s for 64 samples per layer measured). The model itself is left as it was.
    /// </summary>
    public static OrtModelRunner Computing(OnnxModel model, IReadOnlyCollection<string> tensors)
    {
        var part = model.Part(tensors);
        return part.Graph.Nodes.Count == 0 ? Exposing(model, tensors) : new OrtModelRunner(part); // graph inputs alone: no part to run
    }

    /// <summary>
    /// Largest batch for these samples: the smallest first dimension the model fixes on a per-sample input (inputs fed
    /// whole, such as an RNN state [2, N, H], do not count), else <paramref name="wanted"/>; and the data's own limit.
    /// </summary>
    public int MaxBatch(int wanted, CalibrationSet data)
    {
        var fixedBatch = _session.InputMetadata.Where(p => data.Inputs.ContainsKey(p.Key) && p.Value.Dimensions.Length > 0 && p.Value.Dimensions[0] > 0)
            .Select(p => p.Value.Dimensions[0]).DefaultIfEmpty(wanted).Min();
        return Math.Max(1, Math.Min(fixedBatch, data.MaxBatch(wanted)));
    }

    /// <summary>What the requested outputs of one batch may take at most: calibration exposes every activation.</summary>
    private const long OutputBudget = 128L << 20;

    /// <summary>
    /// Runs all samples; <paramref name="onBatch"/> sees (first sample index, count, outputs by name). The first batch
    /// is one sample; its outputs' size sets the batch for the rest (at most <paramref name="batchSize"/>, and within
    /// <see cref="OutputBudget"/>), so exposing all of a transformer's activations does not take gigabytes per batch.
    /// </summary>
    public void Run(CalibrationSet data, int batchSize, Action<int, int, IReadOnlyDictionary<string, OrtValue>> onBatch, IReadOnlyList<string>? outputs = null)
    {
        var names = (outputs ?? OutputNames).ToArray();
        var batch = 1;
        for (int start = 0, count; start < data.Count; start += count)
        {
            count = Math.Min(batch, data.Count - start);
            using var results = RunBatch(data, start, count, names);
            if (start == 0)
            {
                var sampleBytes = results.Where(r => r.IsTensor).Sum(r => (long)r.GetTensorMutableRawData().Length);
                batch = (int)Math.Clamp(OutputBudget / Math.Max(1, sampleBytes), 1, MaxBatch(batchSize, data));
            }

            onBatch(start, count, names.Zip(results).ToDictionary(p => p.First, p => p.Second));
        }
    }

    /// <summary>Runs samples [start, start + count) and returns the requested outputs (dispose them).</summary>
    public IDisposableReadOnlyCollection<OrtValue> RunBatch(CalibrationSet data, int start, int count, string[] outputs)
    {
        var feeds = Feeds(data, start, count);
        try
        {
            using var runOptions = new RunOptions();
            return _session.Run(runOptions, feeds.Select(f => f.Key).ToArray(), feeds.Select(f => f.Value).ToArray(), outputs);
        }
        finally
        {
            foreach (var f in feeds)
            {
                f.Value.Dispose();
            }
        }
    }

    /// <summary>
    /// Times one run of <paramref name="count"/> samples starting at 0: the median of up to <paramref name="repeats"/>
    /// runs, in milliseconds, stopping early (after at least three) once <paramref name="budget"/> is spent.
    /// </summary>
    public double MedianLatencyMs(CalibrationSet data, int count, int repeats, TimeSpan budget)
    {
        var feeds = Feeds(data, 0, Math.Min(count, data.Count));
        try
        {
            using var runOptions = new RunOptions();
            var names = feeds.Select(f => f.Key).ToArray();
            var values = feeds.Select(f => f.Value).ToArray();
            _session.Run(runOptions, names, values, OutputNames.ToArray()).Dispose(); // warm-up
            var times = new List<double>();
            var spent = System.Diagnostics.Stopwatch.StartNew();
            for (var i = 0; i < repeats && (i < 3 || spent.Elapsed < budget); i++)
            {
                var watch = System.Diagnostics.Stopwatch.StartNew();
                _session.Run(runOptions, names, values, OutputNames.ToArray()).Dispose();
                times.Add(watch.Elapsed.TotalMilliseconds);
            }

            times.Sort();
            return times[times.Count / 2];
        }
        finally
        {
            foreach (var f in feeds)
            {
                f.Value.Dispose();
            }
        }
    }

    /// <summary>
    /// Median milliseconds of this model and of <paramref name="other"/> on the same first <paramref name="count"/>
    /// samples, run alternately (one of each per repeat, after a warm-up of each), so a change in the machine's speed
    /// while they run falls on both alike.
    /// </summary>
    public (double This, double Other) PairedMedianLatencyMs(OrtModelRunner other, CalibrationSet data, int count, int repeats, TimeSpan budget)
    {
        var mine = Feeds(data, 0, Math.Min(count, data.Count));
        var theirs = Feeds(data, 0, Math.Min(count, data.Count));
        try
        {
            using var runOptions = new RunOptions();
            double Once(OrtModelRunner runner, List<(string Key, OrtValue Value)> feeds)
            {
                var watch = System.Diagnostics.Stopwatch.StartNew();
                runner._session.Run(runOptions, feeds.Select(f => f.Key).ToArray(), feeds.Select(f => f.Value).ToArray(), runner.OutputNames.ToArray()).Dispose();
                return watch.Elapsed.TotalMilliseconds;
            }

            Once(this, mine);
            Once(other, theirs);
            var (a, b) = (new List<double>(), new List<double>());
            var spent = System.Diagnostics.Stopwatch.StartNew();
            for (var i = 0; i < repeats && (i < 3 || spent.Elapsed < budget); i++)
            {
                a.Add(Once(this, mine));
                b.Add(Once(other, theirs));
            }

            a.Sort();
            b.Sort();
            return (a[a.Count / 2], b[b.Count / 2]);
        }
        finally
        {
            foreach (var f in mine.Concat(theirs))
            {
                f.Value.Dispose();
            }
        }
    }

    /// <summary>Samples [start, start + count) of every per-sample input, and every constant input whole.</summary>
    private static List<(string Key, OrtValue Value)> Feeds(CalibrationSet data, int start, int count) =>
        data.Inputs.Select(p => (p.Key, Value: Slice(p.Value, start, count)))
            .Concat(data.Constants.Select(p => (p.Key, Value: Slice(p.Value, 0, p.Value.Shape.Length == 0 ? 1 : (int)p.Value.Shape[0]))))
            .ToList();

    internal static OrtValue Slice(NpyArray array, int start, int count)
    {
        var shape = array.Shape.Length == 0 ? Array.Empty<long>() : [count, .. array.Shape.Skip(1)];
        var value = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, (TensorElementType)(int)array.ElementType, shape);
        array.Rows(start, count).CopyTo(value.GetTensorMutableRawData());
        return value;
    }

    public void Dispose()
    {
        _session.Dispose();
        if (_folder is null)
        {
            return;
        }

        try
        {
            Directory.Delete(_folder, recursive: true);
        }
        catch (IOException)
        {
            // A leftover temporary folder is harmless.
        }
    }
}
