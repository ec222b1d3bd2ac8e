using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;

namespace Compress.Core.Inspection;

/// <summary>Summarises a model for people and tools: operators, weights per initializer and per layer, I/O, opsets.</summary>
public static class ModelInspector
{
    public static ModelInspection Inspect(OnnxModel model)
    {
        var graph = model.Proto.Graph ?? new GraphProto();
        // Some exporters (paddle2onnx, older PyTorch) keep weights in Constant nodes, not initializers.
        var constants = graph.Node
            .Where(n => n.OpType == "Constant" && OnnxModel.NormalizeDomain(n.Domain) == "" && n.Output.Count == 1)
            .Select(n => (Output: n.Output[0], Tensor: n.Attribute.FirstOrDefault(a => a.Name == "value")?.T))
            .Where(c => c.Tensor is not null)
            .Select(c => Describe(model, c.Tensor!) with { Name = c.Output, Storage = "constant" });
        var initializers = graph.Initializer.Select(t => Describe(model, t))
            .Concat(graph.SparseInitializer.Select(DescribeSparse))
            .Concat(constants).ToList();
        var byName = initializers.GroupBy(i => i.Name).ToDictionary(g => g.Key, g => g.Last());

        var layers = graph.Node
            .Select(n => (Node: n, Weights: n.Input.Where(byName.ContainsKey).Distinct().ToList()))
            .Where(x => x.Weights.Count > 0)
            .Select(x => new LayerInfo(OnnxGraph.Describe(x.Node), x.Node.OpType,
                x.Weights.Sum(w => byName[w].Parameters), x.Weights.Sum(w => byName[w].Bytes), x.Weights))
            .ToList();

        var operators = AllNodes(graph)
            .GroupBy(n => (Domain: OnnxModel.NormalizeDomain(n.Domain), n.OpType))
            .Select(g => new OperatorCount(g.Key.Domain, g.Key.OpType, g.Count()))
            .OrderByDescending(o => o.Count).ThenBy(o => o.Domain, StringComparer.Ordinal).ThenBy(o => o.OpType, StringComparer.Ordinal)
            .ToList();

        var external = model.ExternalData.Values
            .GroupBy(r => r.Location)
            .Select(g => new ExternalDataFile(g.Key, new FileInfo(g.First().FullPath).Length, g.Count()))
            .OrderBy(f => f.Location, StringComparer.Ordinal)
            .ToList();

        var initializerNames = new HashSet<string>(byName.Keys);
        return new ModelInspection(
            model.Path ?? "",
            model.Path is null ? 0 : new FileInfo(model.Path).Length,
            model.Proto.IrVersion,
            model.Proto.ProducerName,
            model.Proto.ProducerVersion,
            model.Proto.OpsetImport.Select(o => new OpsetInfo(OnnxModel.NormalizeDomain(o.Domain) is "" ? "ai.onnx" : o.Domain, o.Version)).ToList(),
            graph.Input.Where(i => !initializerNames.Contains(i.Name)).Select(DescribeValue).ToList(),
            graph.Output.Select(DescribeValue).ToList(),
            operators,
            initializers,
            layers,
            external,
            new InspectionTotals(AllNodes(graph).Count(), initializers.Count, initializers.Sum(i => i.Parameters), initializers.Sum(i => i.Bytes)));
    }

    private static IEnumerable<NodeProto> AllNodes(GraphProto graph) =>
        graph.Node.SelectMany(n => n.Attribute.SelectMany(a => a.G is null ? a.Graphs : a.Graphs.Append(a.G)).SelectMany(AllNodes).Prepend(n));

    private static InitializerInfo Describe(OnnxModel model, TensorProto t)
    {
        var parameters = OnnxElementTypes.ElementCount(t.Dims);
        long bytes = model.ExternalData.TryGetValue(t, out var reference) ? reference.Length
            : t.HasRawData ? t.RawData.Length
            : ExternalDataReference.ExpectedByteSize(t) ?? t.CalculateSize();
        return new InitializerInfo(t.Name, OnnxElementTypes.Name(t.DataType), t.Dims.ToList(), parameters, bytes,
            reference is null ? "embedded" : "external");
    }

    private static InitializerInfo DescribeSparse(SparseTensorProto s)
    {
        var values = s.Values ?? new TensorProto();
        var stored = (values.HasRawData ? values.RawData.Length : ExternalDataReference.ExpectedByteSize(values) ?? 0)
            + (s.Indices is { } i ? i.HasRawData ? i.RawData.Length : ExternalDataReference.ExpectedByteSize(i) ?? 0 : 0);
        return new InitializerInfo(values.Name, OnnxElementTypes.Name(values.DataType), s.Dims.ToList(),
            OnnxElementTypes.ElementCount(s.Dims), stored, "sparse");
    }

    private static ValueInfo DescribeValue(ValueInfoProto v)
    {
        var tensor = v.Type?.TensorType;
        IReadOnlyList<object?>? shape = tensor?.Shape?.Dim.Select(d => d.ValueCase switch
        {
            TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue => (object?)d.DimValue,
            TensorShapeProto.Types.Dimension.ValueOneofCase.DimParam => d.DimParam,
            _ => null,
        }).ToList();
        return new ValueInfo(v.Name, OnnxElementTypes.Describe(v.Type), tensor is null ? null : OnnxElementTypes.Name(tensor.ElemType), shape);
    }
}
