namespace Compress.Core.Inspection;

/// <summary>
/// What <c>compress inspect</c> reports about a model. Serialised as the documented JSON of
/// docs/cli/inspect.md (camelCase); field names are a contract with tools.
/// </summary>
public sealed record ModelInspection(
    string Path,
    long FileBytes,
    long IrVersion,
    string ProducerName,
    string ProducerVersion,
    IReadOnlyList<OpsetInfo> Opsets,
    IReadOnlyList<ValueInfo> Inputs,
    IReadOnlyList<ValueInfo> Outputs,
    IReadOnlyList<OperatorCount> Operators,
    IReadOnlyList<InitializerInfo> Initializers,
    IReadOnlyList<LayerInfo> Layers,
    IReadOnlyList<ExternalDataFile> ExternalDataFiles,
    InspectionTotals Totals);

public sealed record OpsetInfo(string Domain, long Version);

/// <summary>A graph input or output. <c>Shape</c> entries are numbers (fixed) or strings (symbolic); null when unknown.</summary>
public sealed record ValueInfo(string Name, string Type, string? ElementType, IReadOnlyList<object?>? Shape);

public sealed record OperatorCount(string Domain, string OpType, int Count);

/// <summary>Storage: <c>embedded</c>, <c>external</c>, <c>sparse</c>, or <c>constant</c> (the value of a Constant node).</summary>
public sealed record InitializerInfo(string Name, string ElementType, IReadOnlyList<long> Shape, long Parameters, long Bytes, string Storage);

/// <summary>A node that reads initializers or Constant values (a "layer"): its weights and their size.</summary>
public sealed record LayerInfo(string Node, string OpType, long Parameters, long Bytes, IReadOnlyList<string> Initializers);

public sealed record ExternalDataFile(string Location, long Bytes, int Tensors);

public sealed record InspectionTotals(int Nodes, int InitializerCount, long Parameters, long InitializerBytes);
