using System.Text.Json;
using Compress.Core.Data;

namespace Compress.Cli.Tests;

public sealed class RunCommandTests : CliTest
{

    [Fact]
    public void Run_writes_the_model_and_the_three_reports()
    {
        FashionMnist.WriteNpz(Path.Combine(Dir, "calib.npz"), test: false, [784], 300);
        FashionMnist.WriteNpz(Path.Combine(Dir, "val.npz"), test: true, [784], 1000);
        var spec = Path.Combine(Dir, "mlp.compress.json");
        File.WriteAllText(spec, """
        {
          "data": { "calibration": { "path": "calib.npz" }, "evaluation": { "path": "val.npz", "labels": "labels" } },
          "steps": [ { "quantize": { "weights": "int8", "activations": "uint8" } } ],
          "constraints": { "maxAccuracyDrop": 0.01 }
        }
        """);
        var output = Path.Combine(Dir, "out", "mlp.int8.onnx");
        var (code, stdout, stderr) = Run("run", Mlp, "--spec", spec, "--output", output, "--report", Path.Combine(Dir, "r.json"), Path.Combine(Dir, "r.md"), Path.Combine(Dir, "r.html"));
        Assert.True(code == 0, stderr);
        Assert.Contains("compress: [", stderr); // progress lines
        Assert.Matches(@"mlp\.int8\.onnx: [\d,]+ bytes \(0\.2\d\dx of 1,066,969\), accuracy 0\.\d{4} -> 0\.\d{4}", stdout);
        Assert.True(File.Exists(output));
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(Dir, "r.json")));
        Assert.Equal("quantize/static", json.RootElement.GetProperty("steps")[0].GetString());
        Assert.True(json.RootElement.GetProperty("size").GetProperty("ratio").GetDouble() < 0.3);
        Assert.Equal(3, json.RootElement.GetProperty("layers").GetArrayLength());
        Assert.True(json.RootElement.GetProperty("constraints")[0].GetProperty("met").GetBoolean());
        Assert.Contains("| accuracy (1000 samples) |", File.ReadAllText(Path.Combine(Dir, "r.md")));
        var html = System.Xml.Linq.XDocument.Parse(File.ReadAllText(Path.Combine(Dir, "r.html")));
        Assert.Equal(["sparsity-bits", "bytes"], html.Descendants().Where(e => e.Name.LocalName == "svg").Select(e => (string?)e.Attribute("data-chart")));
        Assert.Equal(3, html.Descendants().Count(e => e.Name.LocalName == "g" && (string?)e.Parent?.Attribute("data-chart") == "bytes" && e.Attribute("data-layer") is not null));

        (code, stdout, _) = Run("eval", output, "--data", Path.Combine(Dir, "val.npz"), "--labels", "labels", "--reference", Mlp);
        Assert.Equal(0, code);
        Assert.Matches(@"accuracy: 0\.\d{4} \(reference 0\.\d{4}\)", stdout);
        Assert.Contains("agreement: ", stdout);
    }

    [Fact]
    public void A_report_of_an_unknown_kind_is_refused_before_any_work()
    {
        var spec = Path.Combine(Dir, "q.json");
        File.WriteAllText(spec, """{ "steps": [ { "quantize": { "weights": "int8" } } ] }""");
        var output = Path.Combine(Dir, "never.onnx");
        var (code, _, stderr) = Run("run", Mlp, "--spec", spec, "--output", output, "--report", Path.Combine(Dir, "r.txt"));
        Assert.Equal(1, code);
        Assert.Contains("error CMP0009: report ", stderr);
        Assert.Contains("'.txt' is not a report format", stderr);
        Assert.False(File.Exists(output));
    }

    [Fact]
    public void A_bad_spec_is_reported_at_its_line_and_column()
    {
        var spec = Path.Combine(Dir, "bad.json");
        File.WriteAllText(spec, "{\n  \"steps\": [\n    { \"prune\": { \"sparsity\": 2 } }\n  ]\n}\n");
        var output = Path.Combine(Dir, "never.onnx");
        var (code, _, stderr) = Run("run", Mlp, "--spec", spec, "--output", output);
        Assert.Equal(1, code);
        Assert.Equal($"{spec}(3,30): error CMP0103: 'sparsity' is 2; it must be between 0 and 0.999", stderr.Trim());
        Assert.False(File.Exists(output));
    }
}
