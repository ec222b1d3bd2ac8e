using System.Reflection;
using Compress.Core.Diagnostics;
using Compress.Core.Tests.TestSupport;

namespace Compress.Core.Tests.Diagnostics;

public sealed class DiagnosticCodesTests
{
    private static IEnumerable<string> Codes() =>
        new[] { typeof(DiagnosticCodes), typeof(Compress.Spec.SpecCodes), typeof(Compress.Spec.BuildCodes) }
            .SelectMany(t => t.GetFields(BindingFlags.Public | BindingFlags.Static)).Select(f => (string)f.GetValue(null)!)
            .Append(Compress.Spec.Manifest.ManifestJson.MalformedCode);

    [Fact]
    public void Codes_are_unique_engine_codes_each_with_a_help_page()
    {
        var codes = Codes().ToList();
        Assert.Equal(codes.Count, codes.Distinct().Count());
        foreach (var code in codes)
        {
            Assert.Matches("^CMP[01][0-9]{3}$", code);
            var page = Path.Combine(TestData.RepoRoot, "docs", "diagnostics", code + ".md");
            Assert.True(File.Exists(page), $"{code} has no help page at docs/diagnostics/{code}.md");
            Assert.StartsWith($"# {code}: ", File.ReadAllText(page));
        }
    }

    [Fact]
    public void Canonical_form_matches_msbuild()
    {
        Assert.Equal("spec.json(3,7): error CMP0101: bad", new CompressDiagnostic("CMP0101", DiagnosticSeverity.Error, "bad", "spec.json", 3, 7).ToString());
        Assert.Equal("m.onnx: error CMP0002: bad", new CompressDiagnostic("CMP0002", DiagnosticSeverity.Error, "bad", "m.onnx").ToString());
        Assert.Equal("compress: warning CMP0009: w", new CompressDiagnostic("CMP0009", DiagnosticSeverity.Warning, "w").ToString());
    }
}
