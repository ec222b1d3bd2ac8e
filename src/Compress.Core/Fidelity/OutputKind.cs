using System.Text.Json.Serialization;

namespace Compress.Core.Fidelity;

/// <summary>What a model output holds, which decides how its fidelity is measured (docs/cli/run.md, "Fidelity").</summary>
[JsonConverter(typeof(JsonStringEnumConverter<OutputKind>))]
public enum OutputKind
{
    /// <summary>A class axis at least 2 wide: <c>[N, C]</c>, or <c>[N, T, C]</c> per time step. Measured by agreement (and accuracy).</summary>
    ClassScores,

    /// <summary>Everything else: pooled features, hidden states, embeddings, detection and segmentation maps. Measured by cosine and SQNR.</summary>
    Features,
}

/// <summary>How an output's kind is decided from its shape at run time.</summary>
public static class OutputKinds
{
    /// <summary>
    /// <c>[N, C]</c> with C ≥ 2 is class scores; so is <c>[N, T, C]</c> unless the model takes an attention mask (then
    /// it is a hidden-state sequence). Anything else, including <c>[N, C, 1, 1]</c> pooled features and axes 1 wide,
    /// is features: agreement over an axis 1 wide would always be 100%.
    /// </summary>
    public static OutputKind Classify(IReadOnlyList<long> shape, int samples, bool maskedSequence) => shape.Count switch
    {
        2 when shape[0] == samples && shape[1] >= 2 => OutputKind.ClassScores,
        3 when shape[0] == samples && shape[2] >= 2 && !maskedSequence => OutputKind.ClassScores,
        _ => OutputKind.Features,
    };

    /// <summary>
    /// The kind an output's declared shape (<paramref name="dims"/>: null for an axis whose size is symbolic) already
    /// settles before any run — <see cref="OutputKind.Features"/> when no run-time shape could make it class scores (a
    /// rank other than 2 or 3, an axis 1 wide where the classes would be, a masked sequence) — else null: decided at
    /// run time by <see cref="Classify"/>.
    /// </summary>
    public static OutputKind? Declared(IReadOnlyList<long?> dims, bool maskedSequence) => dims.Count switch
    {
        2 when dims[1] is not < 2 => null,
        3 when !maskedSequence && dims[2] is not < 2 => null,
        _ => OutputKind.Features,
    };

    public static string Name(OutputKind kind) => kind == OutputKind.ClassScores ? "class scores" : "features";
}
