namespace Compress.Core.Diagnostics;

/// <summary>
/// The engine's diagnostic IDs (CMP0xxx). Each has a help page under docs/diagnostics/.
/// Numbers are never reused.
/// </summary>
public static class DiagnosticCodes
{
    /// <summary>The model file does not exist or cannot be opened.</summary>
    public const string ModelNotFound = "CMP0001";

    /// <summary>The model file is not a valid ONNX protobuf (corrupt, truncated, not ONNX).</summary>
    public const string ModelMalformed = "CMP0002";

    /// <summary>Messages nested deeper than the reader allows (a hostile or broken file).</summary>
    public const string ModelTooDeep = "CMP0003";

    /// <summary>An external-data location that would leave the model's folder (absolute, '..', a link out).</summary>
    public const string ExternalDataUnsafePath = "CMP0004";

    /// <summary>External data that is missing, or an offset/length outside its file.</summary>
    public const string ExternalDataInvalid = "CMP0005";

    /// <summary>A model that cannot be written (I/O failure, a single tensor over the format's limits).</summary>
    public const string ModelWriteFailed = "CMP0006";

    /// <summary>The model is structurally invalid for the requested operation (e.g. a graph cycle).</summary>
    public const string GraphInvalid = "CMP0007";

    /// <summary>TorchSharp's native library cannot be loaded on this machine.</summary>
    public const string TorchNativeLoadFailed = "CMP0008";

    /// <summary>A command-line usage error (missing argument, unknown option).</summary>
    public const string CommandLineUsage = "CMP0009";

    /// <summary>A data file (.npy/.npz) named by a spec or on the command line does not exist.</summary>
    public const string DataNotFound = "CMP0020";

    /// <summary>A .npy/.npz file is malformed or truncated.</summary>
    public const string DataMalformed = "CMP0021";

    /// <summary>A .npy array uses a layout or element type the engine does not read (Fortran order, objects, big-endian structured types).</summary>
    public const string DataUnsupported = "CMP0022";

    /// <summary>Data arrays do not match the model (missing input, wrong element type or shape, label count).</summary>
    public const string DataMismatch = "CMP0023";

    /// <summary>The compressed model misses a constraint of the spec; nothing is written.</summary>
    public const string ConstraintNotMet = "CMP0030";

    /// <summary>ONNX Runtime refuses to load the compressed model (a missing kernel, an invalid graph).</summary>
    public const string CompressedModelRejected = "CMP0031";

    /// <summary>The output path is the input model itself, or otherwise unusable.</summary>
    public const string OutputInvalid = "CMP0032";

    /// <summary>With no fidelity constraint in the spec, the judged output fell below the default floor (collapse); nothing is written.</summary>
    public const string FidelityBelowFloor = "CMP0033";

    /// <summary>Warning: fidelity between the default floor and "close", or another output below the floor.</summary>
    public const string FidelityLow = "CMP0034";

    /// <summary>The compressed artifact would be larger than its source; nothing is written.</summary>
    public const string ArtifactLarger = "CMP0035";

    /// <summary>Warning: a step found nothing to change in the model (its weights are of other ops, or inside If/Loop subgraphs).</summary>
    public const string StepChangedNothing = "CMP0036";

    /// <summary>A gradient method needs the model executed in TorchSharp, and the executor lacks one of its operators.</summary>
    public const string OperatorNotExecutable = "CMP0040";

    /// <summary>A TorchSharp module cannot be exported to ONNX (a layer type or option the exporter does not take).</summary>
    public const string ExportUnsupported = "CMP0041";

    /// <summary>An allocation's size budget cannot be met: even the smallest choice of every layer is larger; nothing is written.</summary>
    public const string BudgetUnreachable = "CMP0050";

    /// <summary>An allocation without a size budget found no size meeting the spec's constraints; nothing is written.</summary>
    public const string AllocationInfeasible = "CMP0051";
    /// <summary>A packed model (.cpack) that cannot be expanded: truncated, corrupt, or of a newer format version.</summary>
    public const string PackedModelCorrupt = "CMP0060";

    /// <summary>The output's extension does not match the form 'pack' writes (.cpack for "format": "cpack", .onnx for "onnx").</summary>
    public const string PackOutputName = "CMP0061";

    /// <summary>'pack' on a model that keeps tensors in external data: a packed model is one file.</summary>
    public const string PackExternalData = "CMP0062";

    /// <summary>Warning: an allocation made in one round wrote an artifact over its size budget (its estimate was not corrected by a measurement).</summary>
    public const string AllocationOverBudget = "CMP0052";

    /// <summary>'finetune' found no weight to train among the nodes it selects.</summary>
    public const string FinetuneNothingToTrain = "CMP0070";

    /// <summary>'finetune' cannot train this model or node as the steps left it (external data, an unsupported quantized form).</summary>
    public const string FinetuneUnsupported = "CMP0071";

    /// <summary>Warning: the model was compressed without real data (none in the spec, or only synthesised calibration inputs), so the result was not checked on real data.</summary>
    public const string NotCheckedOnRealData = "CMP0080";

    /// <summary>'synthesize': 'batchnorm' on a model without BatchNormalization statistics to synthesise inputs from.</summary>
    public const string SynthesisNeedsBatchNorm = "CMP0081";

    /// <summary>'synthesize' cannot make the model's inputs: not float32, a symbolic dimension besides the batch, or a format other than ONNX.</summary>
    public const string SynthesisInputUnsupported = "CMP0082";

    /// <summary>The spec's 'module' type cannot be found: its assembly is not given or not among the references, cannot be loaded, or holds no such type.</summary>
    public const string ModuleTypeNotFound = "CMP0083";

    /// <summary>The spec's 'module' type cannot be built: not a TorchSharp Module&lt;Tensor, Tensor&gt;, no constructor fits the arguments, or the constructor threw.</summary>
    public const string ModuleNotBuilt = "CMP0084";

    /// <summary>The state dict does not fit the spec's 'module' type: names or shapes differ (every mismatch listed).</summary>
    public const string ModuleStateDictMismatch = "CMP0085";

    /// <summary>The spec's 'module' type threw in its forward pass on the data (shapes that do not fit, another TorchSharp, a device or dtype the engine does not run).</summary>
    public const string ModuleForwardFailed = "CMP0086";

    /// <summary>A channel allocation (a 'macs' or 'latency' budget) cannot cut copies of a model whose weights are in external data.</summary>
    public const string ChannelAllocationExternalData = "CMP0087";

    /// <summary>The written model runs slower than its source on this machine, and the spec sets no 'maxLatencyRatio' to let the latency guard choose faster forms.</summary>
    public const string SlowerThanSource = "CMP0088";

    /// <summary>An unexpected internal failure; always a bug in Compress.Build.</summary>
    public const string InternalError = "CMP0099";
}
