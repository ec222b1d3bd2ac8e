using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Compress.Core.Reports;

/// <summary>The kinds of report, chosen by the file's extension.</summary>
public enum ReportFormat
{
    Json,
    Markdown,
    Html,
}

/// <summary>Writes a <see cref="CompressionReport"/> as JSON (camelCase, documented in docs/cli/run.md), Markdown or HTML (<see cref="HtmlReport"/>).</summary>
public static class ReportWriter
{
    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public static void Write(CompressionReport report, string path)
    {
        var text = FormatOf(path) switch
        {
            ReportFormat.Markdown => Markdown(report),
            ReportFormat.Html => HtmlReport.Write(report),
            _ => JsonSerializer.Serialize(report, Json),
        };
        Compress.Spec.IO.AtomicFile.WriteAllText(path, text);
    }

    /// <summary>The report kind of <paramref name="path"/>: <c>.json</c>, <c>.md</c>, <c>.html</c>/<c>.htm</c>; any other extension is a usage error (CMP0009), raised before any work.</summary>
    public static ReportFormat FormatOf(string path) => Path.GetExtension(path).ToLowerInvariant() switch
    {
        ".json" => ReportFormat.Json,
        ".md" => ReportFormat.Markdown,
        ".html" or ".htm" => ReportFormat.Html,
        var other => throw Diagnostics.CompressException.Error(Diagnostics.DiagnosticCodes.CommandLineUsage,
            $"report '{path}': '{other}' is not a report format; use .json (for tools), .md or .html (for people)"),
    };

    public static string Markdown(CompressionReport r)
    {
        var c = CultureInfo.InvariantCulture;
        var md = new StringBuilder();
        md.AppendLine(c, $"# Compression report: {Path.GetFileName(r.Model)}");
        md.AppendLine();
        md.AppendLine(c, $"Steps: {string.Join(" → ", r.Steps)}. Output: `{Path.GetFileName(r.Output)}`.");
        md.AppendLine();
        md.AppendLine("| | original | compressed |");
        md.AppendLine("| --- | ---: | ---: |");
        md.AppendLine(c, $"| file size | {r.Size.OriginalBytes:N0} B | {r.Size.CompressedBytes:N0} B ({r.Size.Ratio:0.000}×) |");
        md.AppendLine(c, $"| weight sparsity | | {r.Size.OverallSparsity:P1} |");
        if (r.Metrics is { } m)
        {
            if (m.OriginalAccuracy is { } a && m.CompressedAccuracy is { } b)
            {
                md.AppendLine(c, $"| accuracy ({m.Samples} samples) | {a:P2} | {b:P2} (drop {(a - b) * 100:0.00} pp) |");
            }

            if (m.Agreement is { } agreement)
            {
                md.AppendLine(c, $"| top-1 agreement | | {agreement:P2} of {m.AgreementPredictions:N0} predictions |");
            }

            if (m.MeanCosine is { } cosine)
            {
                md.AppendLine(c, $"| cosine similarity (mean, 1st percentile) | | {cosine:0.0000}, {m.P1Cosine:0.0000} |");
            }

            md.AppendLine(c, $"| output SQNR | | {m.SqnrDb:0.0} dB |");
        }

        if (r.Latency is { } l)
        {
            md.AppendLine(c, $"| latency batch 1 (1 thread, median) | {l.OriginalBatch1Ms:0.000} ms | {l.CompressedBatch1Ms:0.000} ms |");
            md.AppendLine(c, $"| latency batch {l.BatchN} | {l.OriginalBatchNMs:0.000} ms | {l.CompressedBatchNMs:0.000} ms |");
        }

        md.AppendLine();
        foreach (var constraint in r.Constraints)
        {
            md.AppendLine(c, $"- constraint {constraint.Name}: limit {constraint.Limit:0.####}, measured {constraint.Measured:0.####} — {(constraint.Met ? "met" : "NOT met")}");
        }

        if (r.Latency?.CompressedIsSlower == true)
        {
            md.AppendLine("- **The compressed model is slower than the original on this machine** (see latency above).");
        }

        if (r.Latency?.Forms is { } forms)
        {
            md.AppendLine(c, $"- {Evaluation.WeightFormTiming.Describe(forms)}");
        }

        foreach (var note in r.Notes)
        {
            md.AppendLine(c, $"- {note}");
        }

        foreach (var warning in r.Warnings ?? [])
        {
            md.AppendLine(c, $"- **warning {warning.Code}**: {warning.Message}");
        }

        if (r.Metrics is { Outputs.Count: > 0 } measured)
        {
            md.AppendLine();
            md.AppendLine(c, $"## Fidelity per output ({measured.Samples} samples; judged: `{measured.Output}`)");
            md.AppendLine();
            md.AppendLine("| output | kind | shape | accuracy | agreement | cosine mean | cosine 1st pct | SQNR |");
            md.AppendLine("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |");
            foreach (var o in measured.Outputs)
            {
                md.AppendLine(c, $"| {o.Name} | {Fidelity.OutputKinds.Name(o.Kind)} | [{string.Join(", ", o.Shape.Select(d => d < 0 ? "N" : d.ToString(c)))}] | " +
                    $"{(o.CompressedAccuracy is { } a ? a.ToString("P2", c) : "")} | {(o.Agreement is { } g ? g.ToString("P2", c) : "")} | " +
                    $"{(o.MeanCosine is { } mean ? mean.ToString("0.0000", c) : "")} | {(o.P1Cosine is { } p ? p.ToString("0.0000", c) : "")} | {o.SqnrDb.ToString("0.0", c)} dB |");
            }
        }

        if (r.Stages is { Count: > 0 } stages)
        {
            md.AppendLine();
            md.AppendLine("## Work by stage (one sample: multiply-adds of Conv/ConvTranspose/Gemm/MatMul; batch-1 latency, 1 thread, median)");
            md.AppendLine();
            md.AppendLine("| stage | multiply-adds | of the source | batch-1 latency |");
            md.AppendLine("| --- | ---: | ---: | ---: |");
            var first = stages[0].MultiplyAdds;
            foreach (var s in stages)
            {
                md.AppendLine(c, $"| {s.Stage} | {(s.MultiplyAdds is { } macs ? macs.ToString("N0", c) : "")} | {(s.MultiplyAdds is { } done && first is > 0 ? (done / (double)first).ToString("P1", c) : "")} | {(s.Batch1Ms is { } ms ? ms.ToString("0.000", c) + " ms" : "")} |");
            }
        }

        if (r.Search is { } search)
        {
            md.AppendLine();
            md.AppendLine(c, $"## Sparsity search ({search.Method}): chose {search.Chosen:P1} in {search.Points.Count} rounds");
            md.AppendLine();
            md.AppendLine("| round | sparsity | accuracy | agreement | cosine | constraints |");
            md.AppendLine("| ---: | ---: | ---: | ---: | ---: | --- |");
            for (var i = 0; i < search.Points.Count; i++)
            {
                var p = search.Points[i];
                md.AppendLine(c, $"| {i + 1} | {p.Sparsity:P1} | {(p.Accuracy is { } pa ? pa.ToString("P2", c) : "")} | {(p.Agreement is { } pg ? pg.ToString("P2", c) : "")} | {(p.Cosine is { } pc ? pc.ToString("0.0000", c) : "")} | {(p.Feasible ? "met" : "not met")} |");
            }
        }

        md.AppendLine();
        md.AppendLine("## Layers");
        md.AppendLine();
        md.AppendLine("| weight | node | op | parameters | sparsity | bits | format | relative error |");
        md.AppendLine("| --- | --- | --- | ---: | ---: | ---: | --- | ---: |");
        foreach (var layer in r.Layers)
        {
            md.AppendLine(c, $"| {layer.Weight} | {layer.Node} | {layer.OpType} | {layer.Parameters:N0} | {layer.Sparsity:P1} | {layer.Bits} | {layer.Format} | {layer.RelativeError:E2} |");
        }

        return md.ToString();
    }
}
