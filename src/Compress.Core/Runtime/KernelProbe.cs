using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Spec.Kernels;
using Compress.Spec.Onnx;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;

namespace Compress.Core.Runtime;

public enum KernelProbeResult
{
    /// <summary>ONNX Runtime created a session for the one-node model: the kernel exists.</summary>
    Present,

    /// <summary>ONNX Runtime said it has no implementation for the op at that version and type.</summary>
    Missing,

    /// <summary>No kernel for the type, but ONNX Runtime runs the node behind Casts it inserts (float16 on the CPU).</summary>
    EmulatedByCasts,

    /// <summary>The one-node model failed for another reason (the op needs attributes or inputs the probe cannot guess).</summary>
    Inconclusive,
}

/// <summary>
/// Asks the ONNX Runtime this product ships whether it has a CPU kernel for an op, opset and element type: builds a
/// one-node model whose inputs all have that type (1, 2 or 3 of them, as the op's arity allows) and creates a session.
/// The runtime is the final judge of the documented kernel table.
/// </summary>
public static class KernelProbe
{
    private static readonly string[] TensorTypes =
        ["float", "double", "float16", "bfloat16", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "bool", "string"];

    /// <summary>
    /// Probes every ai.onnx row of <paramref name="table"/> at its first opset, for each documented type of its first
    /// type constraint and, with <paramref name="findUndocumented"/>, for the other tensor types too. A type ONNX
    /// Runtime only emulates (inserting Casts to float, as the CPU provider does for float16) counts as missing.
    /// </summary>
    public static KernelTableCheck Check(OrtKernelTable table, bool findUndocumented)
    {
        var check = new KernelTableCheck();
        foreach (var row in table.Rows.Where(r => r.Domain == "ai.onnx" && r.Types.Count > 0))
        {
            var documented = row.Types.First().Value;
            foreach (var type in documented)
            {
                var result = Probe("", row.Op, row.Since, type);
                check.Counts[result] = check.Counts.GetValueOrDefault(result) + 1;
                if (result is KernelProbeResult.Missing or KernelProbeResult.EmulatedByCasts)
                {
                    check.Missing.Add((row, type));
                }
            }

            foreach (var type in findUndocumented ? TensorTypes.Except(documented) : [])
            {
                if (Probe("", row.Op, row.Since, type) == KernelProbeResult.Present)
                {
                    check.Undocumented.Add((row, type));
                }
            }
        }

        return check;
    }

    public static KernelProbeResult Probe(string domain, string op, int opset, string elementType)
    {
        var type = OnnxTypeNames.Code(elementType);
        if (type <= 0)
        {
            return KernelProbeResult.Inconclusive;
        }

        var optimized = Path.Combine(Path.GetTempPath(), $"compress-probe-{Environment.ProcessId}-{Guid.NewGuid():N}.onnx");
        using var options = new SessionOptions
        {
            LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL,
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL,
            OptimizedModelFilePath = optimized, // shows the Casts ONNX Runtime inserts for types it only emulates
        };
        try
        {
            return Probe(domain, op, opset, type, options, optimized);
        }
        finally
        {
            File.Delete(optimized);
        }
    }

    private static KernelProbeResult Probe(string domain, string op, int opset, int type, SessionOptions options, string optimized)
    {
        for (var arity = 1; arity <= 3; arity++)
        {
            var builder = new GraphBuilder("probe");
            if (domain is not ("" or "ai.onnx"))
            {
                builder.Opset(domain, opset).Opset("", 17);
            }
            else
            {
                builder.Opset("", opset);
            }

            var inputs = Enumerable.Range(0, arity).Select(i => "x" + i).ToArray();
            foreach (var input in inputs)
            {
                builder.Input(input, (TensorProto.Types.DataType)type, 2, 2);
            }

            var model = builder.Node(op, inputs, ["y"], "probe", domain is "ai.onnx" ? "" : domain).Build(irVersion: 8);
            model.Proto.Graph.Output.Add(new ValueInfoProto { Name = "y" });
            try
            {
                using (new InferenceSession(model.Proto.ToByteArray(), options))
                {
                }

                return OnnxModel.Load(optimized).Graph.Nodes.Any(n => n.OpType == "Cast") ? KernelProbeResult.EmulatedByCasts : KernelProbeResult.Present;
            }
            catch (OnnxRuntimeException e)
            {
                if (e.Message.Contains("Could not find an implementation", StringComparison.Ordinal))
                {
                    return KernelProbeResult.Missing;
                }

                if (!e.Message.Contains("input", StringComparison.OrdinalIgnoreCase))
                {
                    return KernelProbeResult.Inconclusive;
                }
            }
        }

        return KernelProbeResult.Inconclusive;
    }
}

/// <summary>What <see cref="KernelProbe.Check"/> found: results per documented probe, documented types refused, undocumented types present.</summary>
public sealed class KernelTableCheck
{
    public Dictionary<KernelProbeResult, int> Counts { get; } = [];

    public List<(KernelRow Row, string Type)> Missing { get; } = [];

    public List<(KernelRow Row, string Type)> Undocumented { get; } = [];
}
