using Compress.Core.Onnx;

namespace Compress.Core.Passes.Graph;

/// <summary>
/// Makes weights constants. IR version 3 required every initializer to be listed as a graph input too (old exporters
/// such as CNTK's do it), and at IR ≥ 4 such an input is an overridable default: ONNX Runtime will not constant-fold
/// it, and once a pass replaces the initializer (a quantized copy, a bitmask) the input would become a required feed.
/// So they leave the input list, and the IR version is raised to 4, where that is valid.
/// </summary>
public static class InitializerInputs
{
    public static int Drop(OnnxModel model)
    {
        var graph = model.Proto.Graph;
        var initializers = graph.Initializer.Select(t => t.Name).Concat(graph.SparseInitializer.Select(t => t.Values.Name)).ToHashSet(StringComparer.Ordinal);
        var listed = graph.Input.Where(i => initializers.Contains(i.Name)).ToList();
        foreach (var input in listed)
        {
            graph.Input.Remove(input);
        }

        if (listed.Count > 0 && model.Proto.IrVersion < 4)
        {
            model.Proto.IrVersion = 4;
        }

        return listed.Count;
    }
}
