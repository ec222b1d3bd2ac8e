using Compress.Core.Runtime;
using Compress.Spec.Kernels;

namespace Compress.Core.Tests.Runtime;

/// <summary>The kernel table the engine and analyzers share, and the probe that checks it against ONNX Runtime.</summary>
public sealed class KernelTableTests
{
    [Theory]
    [InlineData("Relu", 14, "float", KernelProbeResult.Present)]
    [InlineData("Add", 14, "int8", KernelProbeResult.Present)]
    [InlineData("Mul", 14, "float16", KernelProbeResult.EmulatedByCasts)] // the CPU provider casts fp16 arithmetic to float
    [InlineData("Relu", 14, "float16", KernelProbeResult.EmulatedByCasts)]
    [InlineData("Identity", 16, "float16", KernelProbeResult.Present)]
    [InlineData("Relu", 14, "string", KernelProbeResult.Inconclusive)] // not a type Relu accepts at all
    [InlineData("Conv", 11, "float", KernelProbeResult.Inconclusive)] // needs a weight of another shape than the probe's
    public void The_probe_asks_onnx_runtime_itself(string op, int opset, string type, KernelProbeResult expected) =>
        Assert.Equal(expected, KernelProbe.Probe("", op, opset, type));

    [Fact]
    public void The_table_agrees_with_the_probe_where_the_probe_can_tell()
    {
        var check = KernelProbe.Check(OrtKernelTable.Cpu, findUndocumented: false);
        var probed = check.Counts.Values.Sum();
        var contradictions = check.Missing.Select(m => $"{m.Row.Op} {m.Row.Since} {m.Type}").ToList();

        Assert.True(probed > 3000, $"{probed} probes");
        Assert.True(contradictions.Count == 0, "documented but refused by ONNX Runtime (run eng/KernelProbe --write): " + string.Join(", ", contradictions));
    }

    [Fact]
    public void Lookups_follow_opset_ranges()
    {
        Assert.True(OrtKernelTable.Cpu.Supports("", "Relu", 14, "float"));
        Assert.False(OrtKernelTable.Cpu.Supports("", "Mul", 14, "float16"));
        Assert.Null(OrtKernelTable.Cpu.Find("", "NoSuchOp", 17));
        Assert.Equal(13, OrtKernelTable.Cpu.Find("", "Relu", 13)!.Since);
    }
}
