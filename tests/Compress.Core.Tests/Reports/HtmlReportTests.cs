using System.Globalization;
using System.Xml;
using System.Xml.Linq;
using Compress.Core.Diagnostics;
using Compress.Core.Reports;

namespace Compress.Core.Tests.Reports;

/// <summary>The HTML report read back as XML: its charts, their bars and points, escaping and same-bytes output.</summary>
public sealed class HtmlReportTests
{
    private const string OddName = "enc.<b>&\"x'\u0001/weight";

    [Fact]
    public void The_page_is_well_formed_with_one_svg_per_chart_and_nothing_from_outside()
    {
        var html = HtmlReport.Write(Report());
        var doc = Parse(html);
        Assert.Equal("html", doc.Root!.Name.LocalName);
        Assert.Equal(["sensitivity", "sparsity-bits", "bytes", "rounds", "search"], Charts(doc).Select(c => (string)c.Attribute("data-chart")!));
        Assert.DoesNotContain(doc.Descendants(), e => e.Name.LocalName is "script" or "link" or "img" or "iframe");
        Assert.DoesNotContain(doc.Descendants().Attributes(), a => a.Name.LocalName is "src" or "href" || a.Name.LocalName.StartsWith("on", StringComparison.Ordinal));
        Assert.DoesNotContain("@import", html, StringComparison.Ordinal);
        Assert.DoesNotContain("url(", html, StringComparison.Ordinal);
    }

    [Fact]
    public void Per_layer_charts_have_one_row_per_layer_with_bars_in_proportion()
    {
        var doc = Parse(HtmlReport.Write(Report()));
        var sparsity = Rows(doc, "sparsity-bits");
        Assert.Equal(["conv1.weight", OddName.Replace('\u0001', '\uFFFD'), "fc.weight"], sparsity.Select(r => (string)r.Attribute("data-layer")!));
        var widths = sparsity.Select(r => Width(r, "sparsity")).ToList();
        Assert.Equal(0.0, widths[0]);
        Assert.Equal(0.9 / 0.5, widths[2] / widths[1], 3);
        Assert.Equal(["#8f8f8f", "#e8731a", "#2f6fb0"], sparsity.Select(r => (string)Bar(r, "sparsity").Attribute("fill")!)); // 32, 4, 8 bits

        // Logarithmic: 1e-1, 1e-3, 1e-2 over [1e-3, 1e-1] → full, empty, half.
        var sensitivity = Rows(doc, "sensitivity").Select(r => Width(r, "sensitivity")).ToList();
        Assert.Equal(0.0, sensitivity[1]);
        Assert.Equal(0.5, sensitivity[2] / sensitivity[0], 3);

        var bytes = Rows(doc, "bytes");
        Assert.Equal(3, bytes.Count);
        Assert.Equal(Width(bytes[0], "before"), Width(bytes[0], "after")); // float32 dense: as it was
        Assert.All(bytes.Skip(1), r => Assert.True(Width(r, "after") < Width(r, "before")));
        Assert.Equal(1152.0 / (4 * 4608), Width(bytes[2], "after") / Width(bytes[2], "before"), 3);
        Assert.Equal(4608.0 / 864, Width(bytes[2], "before") / Width(bytes[0], "before"), 2); // coordinates carry two decimals
    }

    [Fact]
    public void The_rounds_curve_has_a_point_per_round_and_figure_and_rings_the_chosen_one()
    {
        var doc = Parse(HtmlReport.Write(Report()));
        var rounds = Charts(doc).Single(c => (string)c.Attribute("data-chart")! == "rounds");
        var series = rounds.Descendants().Where(e => e.Name.LocalName == "g" && e.Attribute("data-series") is not null).ToList();
        Assert.Equal(["accuracy", "agreement"], series.Select(s => (string)s.Attribute("data-series")!));
        Assert.All(series, s => Assert.Equal(3, s.Elements().Count(e => e.Name.LocalName == "circle")));
        var chosen = rounds.Descendants().Where(e => e.Name.LocalName == "circle" && ((string)e.Attribute("class")!).Contains("chosen")).ToList();
        Assert.Equal(2, chosen.Count);
        Assert.All(chosen, c => Assert.Contains("round 2", c.Value));

        // The search's round 3 missed its constraints: drawn hollow.
        var search = Charts(doc).Single(c => (string)c.Attribute("data-chart")! == "search").Descendants().Where(e => e.Name.LocalName == "circle").ToList();
        Assert.Equal(6, search.Count); // accuracy and agreement
        Assert.Equal(2, search.Count(c => (string)c.Attribute("fill")! == "#fff"));
    }

    [Fact]
    public void Every_text_is_escaped()
    {
        var html = HtmlReport.Write(Report());
        Assert.DoesNotContain("<b>", html, StringComparison.Ordinal);
        Assert.DoesNotContain("\u0001", html, StringComparison.Ordinal);
        Assert.Contains("enc.&lt;b&gt;&amp;&quot;x&#39;\uFFFD/weight", html, StringComparison.Ordinal);
        var doc = Parse(html);
        Assert.Contains(doc.Descendants(), e => e.Name.LocalName == "li" && e.Value == "warning CMP0034: agreement <0.99> & \"low\"");
        Assert.Contains(doc.Descendants(), e => e.Name.LocalName == "p" && e.Value.Contains("Budget: 4 < 8 & \"budget\".", StringComparison.Ordinal));
    }

    [Fact]
    public void The_same_report_gives_the_same_bytes_in_every_culture()
    {
        var first = HtmlReport.Write(Report());
        var culture = CultureInfo.CurrentCulture;
        try
        {
            CultureInfo.CurrentCulture = CultureInfo.GetCultureInfo("de-DE");
            Assert.Equal(first, HtmlReport.Write(Report()));
        }
        finally
        {
            CultureInfo.CurrentCulture = culture;
        }

        Assert.Contains("height=\"6.6\"", first, StringComparison.Ordinal); // a point, not a comma
    }

    [Fact]
    public void Hundreds_of_layers_stay_one_short_labelled_row_each()
    {
        var layers = Enumerable.Range(0, 300).Select(i => new LayerFigures($"model.bert.encoder.layer.{i / 6}.attention.output.dense.weight.{i}", $"MatMul_{i}", "MatMul",
            589_824, i % 10 / 10.0, 8, "int8 dynamic bitmask", 1e-3)).ToList();
        var doc = Parse(HtmlReport.Write(Report() with { Layers = layers, Allocation = null, Search = null }));
        Assert.Equal(["sparsity-bits", "bytes"], Charts(doc).Select(c => (string)c.Attribute("data-chart")!));
        var rows = Rows(doc, "bytes");
        Assert.Equal(300, rows.Count);
        Assert.All(rows, r => Assert.True(r.Elements().Single(e => (string?)e.Attribute("class") == "label").Value.Length <= 58));
        Assert.EndsWith("dense.weight.299", rows[^1].Elements().Single(e => (string?)e.Attribute("class") == "label").Value, StringComparison.Ordinal);
        Assert.Equal(34 + 300 * 16 + 8, (int)Charts(doc)[1].Attribute("height")!);
    }

    [Fact]
    public void Without_an_allocation_bytes_are_estimated_from_the_format()
    {
        Assert.Equal(0.625 * 1000, HtmlReport.EstimatedBytes(new LayerFigures("w", "n", "Gemm", 1000, 0.5, 8, "int8 QDQ per-channel bitmask", 0)));
        Assert.Equal(4000, HtmlReport.EstimatedBytes(new LayerFigures("w", "n", "Gemm", 1000, 0.5, 32, "float32", 0)));
        Assert.Equal(10 * 4 + 10 * 8, HtmlReport.EstimatedBytes(new LayerFigures("w", "n", "Gemm", 1000, 0.99, 32, "float32 sparse", 0)));
    }

    private static CompressionReport Report()
    {
        AllocatedLayer Layer(string name, long parameters, double sensitivity, double sparsity, int bits, long bytes) =>
            new(name, name + "_node", parameters, sensitivity, sparsity, bits, bytes,
                [new AllocationOption(0, 32, parameters * 4, 0), new AllocationOption(sparsity, bits, bytes, 0.01)]);
        var allocation = new AllocationFigures("dp", "4 < 8 & \"budget\"", 0.025,
            [Layer("conv1.weight", 864, 1e-1, 0, 32, 3456), Layer(OddName, 18432, 1e-3, 0.5, 4, 6912), Layer("fc.weight", 4608, 1e-2, 0.9, 8, 9216 / 8)],
            [new AllocationRound(1, "proxy", 30_000, 0.86, 0.93, null, false), new AllocationRound(2, "corrected", 24_000, 0.88, 0.95, null, true),
             new AllocationRound(3, "smaller", 18_000, 0.80, 0.85, null, false)]);
        return new CompressionReport("/m/cnn.onnx", "/o/cnn.small.onnx", "/s/spec.json", ["allocate/dp", "prune/obs"],
            new SizeFigures(120_000, 24_000, 23_904, 0.2, 0.6),
            [new LayerFigures("conv1.weight", "Conv_0", "Conv", 864, 0, 32, "float32", 0),
             new LayerFigures(OddName, "MatMul<1>", "MatMul", 18432, 0.5, 4, "int4 MatMulNBits block 32 bitmask", 2e-2),
             new LayerFigures("fc.weight", "Gemm_2", "Gemm", 4608, 0.9, 8, "int8 QDQ per-channel bitmask", 3e-2)],
            null, [new ConstraintResult("maxAccuracyDrop", 0.01, 0.004, true)], null, ["weights stored as a bitmask: 2 layers"],
            new SearchFigures("obs", 0.5, [new SearchPoint(0.5, 0.88, 0.95, null, true), new SearchPoint(0.25, 0.89, 0.97, null, true), new SearchPoint(0.75, 0.7, 0.8, null, false)]),
            [CompressDiagnostic.Warning("CMP0034", "agreement <0.99> & \"low\"")], allocation);
    }

    private static XDocument Parse(string html)
    {
        using var reader = XmlReader.Create(new StringReader(html), new XmlReaderSettings { DtdProcessing = DtdProcessing.Ignore });
        return XDocument.Load(reader);
    }

    private static List<XElement> Charts(XDocument doc) => doc.Descendants().Where(e => e.Name.LocalName == "svg").ToList();

    private static List<XElement> Rows(XDocument doc, string chart) =>
        Charts(doc).Single(c => (string)c.Attribute("data-chart")! == chart).Elements().Where(e => e.Attribute("data-layer") is not null).ToList();

    private static XElement Bar(XElement row, string kind) =>
        row.Elements().Single(e => e.Name.LocalName == "rect" && (string?)e.Attribute("class") == "bar " + kind);

    private static double Width(XElement row, string kind) => double.Parse((string)Bar(row, kind).Attribute("width")!, CultureInfo.InvariantCulture);
}
