using Compress.Core.Onnx;

namespace Compress.Core.Passes.Graph;

/// <summary>
/// What every ONNX model goes through before the spec's steps, in this order, so that the steps find each weight as an
/// initializer feeding the operator that uses it: Constant-node weights moved to initializers, initializers listed as
/// graph inputs made constants, Transposes on weights applied to the stored weights, BatchNormalization folded into
/// its Conv. Each rewrite that changed something says so in the report's notes.
/// </summary>
public static class GraphPreparation
{
    private static readonly (Func<OnnxModel, int> Rewrite, string Note)[] Rewrites =
    [
        (ConstantsToInitializers.Apply, "Constant-node weights moved to initializers"),
        (InitializerInputs.Drop, "initializers listed as graph inputs (IR version 3 style) made constants"),
        (TransposedWeights.Fold, "Transpose nodes on weights applied to the stored weights (an export without constant folding)"),
        (BatchNormFolding.Apply, "BatchNormalization nodes folded into the preceding Conv"),
    ];

    /// <summary>Applies the rewrites to <paramref name="model"/>, adding a note for each that changed something.</summary>
    public static void Apply(OnnxModel model, List<string> notes)
    {
        foreach (var (rewrite, note) in Rewrites)
        {
            if (rewrite(model) is > 0 and var count)
            {
                notes.Add($"{count} {note}");
            }
        }
    }
}
