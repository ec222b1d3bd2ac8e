using Compress.Core.Diagnostics;
using Compress.Core.Tests.TestSupport;
using Compress.Spec;
using Compress.Spec.Methods;

namespace Compress.Core.Tests.Spec.Methods;

/// <summary><c>prune.method: "wanda"</c> in the spec: read with calibration data, refused without, listed by the schema.</summary>
public sealed class WandaMethodTests : TempDirectoryTest
{
    [Fact]
    public void A_wanda_step_reads_with_calibration_data()
    {
        File.WriteAllBytes(Path.Combine(Dir, "calib.npz"), [0]);
        var spec = SpecFiles.Load(Dir, """{ "data": { "calibration": { "path": "calib.npz" } }, "steps": [ { "prune": { "method": "wanda", "sparsity": 0.5, "pattern": "2:4" } } ] }""");
        var step = Assert.IsType<PruneStep>(Assert.Single(spec.Steps));
        Assert.Equal(("wanda", 2, 4, true), (step.Method, step.N, step.M, step.DataAware));
        Assert.Same(WandaMethod.Descriptor, MethodCatalog.Of(step));
        Assert.Equal(["Conv", "Gemm", "MatMul"], step.OpTypes);
    }

    [Theory]
    [InlineData("""{ "steps": [ { "prune": { "method": "wanda", "sparsity": 0.5 } } ] }""", 1, 16, "'wanda' needs calibration data (activations): set data.calibration.path, or \"synthesize\": \"batchnorm\" in data.calibration to synthesise inputs from the model's BatchNormalization statistics (the model must have BatchNormalization layers)")]
    [InlineData("""{ "steps": [ { "prune": { "method": "wanda", "sparsity": 0.5, "blockSize": 64 } } ] }""", 1, 76, "'blockSize' applies to the 'obs' and 'woodfisher' methods, not 'wanda'")]
    public void A_wanda_step_is_refused_at_its_place(string text, int line, int column, string message)
    {
        var path = SpecFiles.Write(Dir, text);
        var error = Assert.Throws<CompressException>(() => Core.Spec.SpecLoader.Load(path));
        Assert.Equal((SpecCodes.Inconsistent, line, column), (error.Diagnostic.Code, error.Diagnostic.Line, error.Diagnostic.Column));
        Assert.Equal(message, error.Diagnostic.Message);
    }

    [Fact]
    public void The_schema_lists_wanda()
    {
        using var schema = System.Text.Json.JsonDocument.Parse(File.ReadAllText(SpecSchema.FilePath));
        var method = schema.RootElement.GetProperty("$defs").GetProperty("prune").GetProperty("properties").GetProperty("method");
        Assert.Contains("wanda", method.GetProperty("enum").EnumerateArray().Select(e => e.GetString()));
        Assert.Contains("wanda: |w|·‖x‖", method.GetProperty("description").GetString());
    }
}
