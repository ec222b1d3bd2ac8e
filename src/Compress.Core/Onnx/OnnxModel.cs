using Compress.Core.Onnx.Proto;

namespace Compress.Core.Onnx;

/// <summary>
/// An ONNX model in memory: the protobuf message (kept whole, unknown fields included, so a round trip
/// loses nothing) and the folder its external data is resolved against. Weights stored as external data
/// are not loaded: they are read on demand (<see cref="OpenTensorData"/>) or streamed when the model is saved.
/// </summary>
public sealed class OnnxModel
{
    private readonly Dictionary<TensorProto, ExternalDataReference> _external;
    private OnnxGraph? _graph;

    internal OnnxModel(ModelProto proto, string? path, Dictionary<TensorProto, ExternalDataReference> external)
    {
        Proto = proto;
        Path = path;
        _external = external;
    }

    /// <summary>Wraps a model built in memory (its tensors must all be embedded).</summary>
    public OnnxModel(ModelProto proto)
        : this(proto, null, new Dictionary<TensorProto, ExternalDataReference>(ReferenceEqualityComparer.Instance))
    {
        if (TensorWalker.AllTensors(proto).Any(ExternalDataReference.IsExternal))
        {
            throw new ArgumentException("A model with external data must be loaded from its file so its data can be located.", nameof(proto));
        }
    }

    public ModelProto Proto { get; }

    /// <summary>
    /// The part of this model that computes <paramref name="values"/>, with them as its only outputs: the nodes they
    /// need (<see cref="OnnxGraph.Ancestors"/>), the initializers those read, every graph input (a feed the part does not
    /// read is accepted), the opsets and functions. Nodes and tensors are shared with this model, not copied: the part is
    /// for running, never for editing.
    /// </summary>
    public OnnxModel Part(IReadOnlyCollection<string> values)
    {
        var nodes = Graph.Ancestors(values);
        var reads = OnnxGraph.Reads(nodes);
        bool Needed(string name) => reads.Contains(name) || values.Contains(name);
        var source = Proto.Graph;
        var graph = new GraphProto { Name = source.Name };
        graph.Node.Add(nodes);
        graph.Initializer.Add(source.Initializer.Where(t => Needed(t.Name)));
        graph.SparseInitializer.Add(source.SparseInitializer.Where(t => t.Values is { } v && Needed(v.Name)));
        // Inputs that are initializers (older IR versions list them) go with their initializers.
        graph.Input.Add(source.Input.Where(i => Graph.GetInitializer(i.Name) is null || Needed(i.Name)));
        graph.Output.Add(values.Select(v => source.Output.FirstOrDefault(o => o.Name == v) ?? new ValueInfoProto { Name = v }));
        var proto = new ModelProto { IrVersion = Proto.IrVersion, Graph = graph };
        proto.OpsetImport.Add(Proto.OpsetImport);
        proto.Functions.Add(Proto.Functions);
        var external = new Dictionary<TensorProto, ExternalDataReference>(ReferenceEqualityComparer.Instance);
        foreach (var tensor in TensorWalker.AllTensors(proto).Where(_external.ContainsKey)) // Constant nodes and subgraphs too
        {
            external[tensor] = _external[tensor];
        }

        return new OnnxModel(proto, Path, external);
    }

    /// <summary>The file this model was read from, or null for a model built in memory.</summary>
    public string? Path { get; }

    /// <summary>The main graph, with producer/consumer indexes and editing operations.</summary>
    public OnnxGraph Graph => _graph ??= new OnnxGraph(this, Proto.Graph ?? (Proto.Graph = new GraphProto()));

    /// <summary>External-data references of this model's tensors, checked when the model was read.</summary>
    public IReadOnlyDictionary<TensorProto, ExternalDataReference> ExternalData => _external;

    public static OnnxModel Load(string path, OnnxReadOptions? options = null) => OnnxModelReader.Read(path, options ?? new OnnxReadOptions());

    /// <summary>
    /// The model as read, less its weights' values (names, element types and shapes kept): enough to match data to its
    /// inputs and to run its file in ONNX Runtime, without holding its weights beside a working copy.
    /// </summary>
    public static OnnxModel LoadInterface(string path)
    {
        var model = Load(path);
        foreach (var tensor in model.Proto.Graph.Initializer)
        {
            model.ReplaceData(tensor, new TensorProto());
        }

        model.IsInterface = true;
        return model;
    }

    /// <summary>Whether this is a model's interface only (<see cref="LoadInterface"/>): its file is what runs.</summary>
    public bool IsInterface { get; private set; }

    public void Save(string path, OnnxWriteOptions? options = null) => OnnxModelWriter.Write(this, path, options ?? new OnnxWriteOptions());

    /// <summary>Bytes on disk of the file this model was read from, plus the external data files it references.</summary>
    public long BytesOnDisk() =>
        new FileInfo(Path!).Length + ExternalData.Values.Select(r => r.FullPath).Distinct().Sum(f => new FileInfo(f).Length);

    /// <summary>The bytes <see cref="Save"/> will write: the serialized message plus the external data it keeps.</summary>
    public long SerializedBytes() => Proto.CalculateSize() + ExternalData.Values.Sum(r => r.Length);

    /// <summary>The opset version imported for <paramref name="domain"/> ("" or "ai.onnx" for the default domain), or null.</summary>
    public long? GetOpsetVersion(string domain)
    {
        var normalized = NormalizeDomain(domain);
        var entry = Proto.OpsetImport.FirstOrDefault(o => NormalizeDomain(o.Domain) == normalized);
        return entry?.Version;
    }

    /// <summary>Imports <paramref name="domain"/> at <paramref name="version"/> (raises an existing import, never lowers it).</summary>
    public void RequireOpset(string domain, long version)
    {
        var normalized = NormalizeDomain(domain);
        var entry = Proto.OpsetImport.FirstOrDefault(o => NormalizeDomain(o.Domain) == normalized);
        if (entry is null)
        {
            Proto.OpsetImport.Add(new OperatorSetIdProto { Domain = domain == "ai.onnx" ? "" : domain, Version = version });
        }
        else if (entry.Version < version)
        {
            entry.Version = version;
        }
    }

    internal static string NormalizeDomain(string? domain) => string.IsNullOrEmpty(domain) || domain == "ai.onnx" ? "" : domain;

    /// <summary>
    /// The raw little-endian bytes of a tensor: a view of the embedded raw_data, a memory map of its
    /// external data, or (for values stored in typed fields) a converted copy. Dispose to release the map.
    /// </summary>
    public TensorData OpenTensorData(TensorProto tensor) =>
        _external.TryGetValue(tensor, out var reference) ? TensorData.Map(reference) : TensorData.FromEmbedded(tensor);

    internal void ForgetExternal(TensorProto tensor) => _external.Remove(tensor);

    /// <summary>
    /// Gives <paramref name="tensor"/> new values (raw data of <paramref name="values"/>), embedded from now on. Every
    /// other place values can live is cleared — typed fields (float_data, int64_data, …) and external-data entries —
    /// so the new values are the only ones (a reader prefers raw_data, but stale typed values would still be stored).
    /// </summary>
    public void ReplaceData(TensorProto tensor, TensorProto values)
    {
        tensor.FloatData.Clear();
        tensor.Int32Data.Clear();
        tensor.Int64Data.Clear();
        tensor.DoubleData.Clear();
        tensor.Uint64Data.Clear();
        tensor.StringData.Clear();
        tensor.RawData = values.RawData;
        tensor.ClearDataLocation();
        tensor.ExternalData.Clear();
        ForgetExternal(tensor);
    }
}

public sealed record OnnxReadOptions
{
    /// <summary>How deeply messages may nest (graphs inside attributes inside nodes …) before the file is refused.</summary>
    public int RecursionLimit { get; init; } = 100;
}
