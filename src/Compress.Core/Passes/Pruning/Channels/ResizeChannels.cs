using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;

namespace Compress.Core.Passes.Pruning.Channels;

/// <summary>When a Resize or Upsample keeps channel c at channel c, so a channel group passes through it (algorithms.md §14).</summary>
internal static class ResizeChannels
{
    /// <summary>
    /// Why the node would move or mix channels — or null when it keeps each: its scales are a constant of
    /// <paramref name="rank"/> entries (any rank above 2 when null) with 1 on the batch and channel axes (a feature
    /// pyramid's nearest ×2), not output sizes, which name the channel count, and its coordinates map position c to c
    /// at scale 1 (not a crop, which reads a region of every axis, nor tf_half_pixel_for_nn where it shifts or blends
    /// by half a position).
    /// </summary>
    public static string? Moves(OnnxGraph graph, NodeProto node, int? rank)
    {
        if (node.Ints("axes") is not null)
        {
            return "names its axes";
        }

        var coordinates = node.String("coordinate_transformation_mode", "half_pixel");
        if (coordinates == "tf_crop_and_resize")
        {
            return "crops a region of every axis";
        }

        // At scale 1 tf_half_pixel_for_nn reads position c + 0.5: nearest rounding down keeps c; rounding up, or blending, does not.
        if (coordinates == "tf_half_pixel_for_nn" && !(node.String("mode", "nearest") == "nearest"
            && node.String("nearest_mode", "round_prefer_floor") is "round_prefer_floor" or "floor"))
        {
            return "reads each channel half a position on (tf_half_pixel_for_nn)";
        }

        // Resize (opset 11+): X, roi, scales, sizes; Resize (opset 10) and Upsample (opset 9): X, scales; Upsample (7, 8): the attribute.
        var scalesInput = node.OpType == "Resize" && node.Input.Count > 2 ? 2 : 1;
        if (node.OpType == "Resize" && node.Input.Count > 3 && node.Input[3].Length > 0)
        {
            return "sets its output sizes, which name the channel count";
        }

        var scales = node.Input.Count > scalesInput && node.Input[scalesInput].Length > 0
            ? Floats(graph, node.Input[scalesInput])
            : node.Floats("scales");
        return scales is { Length: > 2 } s && (rank is null || s.Length == rank) && s[0] == 1 && s[1] == 1
            ? null
            : "scales the batch or channel axis, or by values the engine cannot read";
    }

    /// <summary>The values of a float constant (an initializer or a Constant node), or null.</summary>
    private static float[]? Floats(OnnxGraph graph, string value)
    {
        var tensor = graph.GetInitializer(value) ?? (graph.GetProducer(value) is { OpType: "Constant" } constant ? constant.TensorValue("value") : null);
        if (tensor is null || tensor.DataType != (int)TensorProto.Types.DataType.Float || ExternalDataReference.IsExternal(tensor))
        {
            return null;
        }

        using var data = TensorData.FromEmbedded(tensor);
        return data.As<float>().ToArray();
    }
}
