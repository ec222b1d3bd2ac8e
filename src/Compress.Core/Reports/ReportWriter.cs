using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Compress.Core.Reports;

/// <summary>Writes a <see cref="CompressionReport"/> as JSON (camelCase, documented in docs/cli/run.md) or Markdown.</summary>
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
        var text = path.EndsWith(".md", StringComparison.OrdinalIgnoreCase) ? Markdown(report) : JsonSerializer.Serialize(report, Json);
        Compress.Spec.IO.AtomicFile.WriteAllText(path, text);
    }

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

            md.AppendLine(c, $"| top-1 agreement | | {m.Agreement:P2} of {m.AgreementPredictions:N0} predictions |");
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

        foreach (var note in r.Notes)
        {
            md.AppendLine(c, $"- {note}");
        }

        if (r.Search is { } search)
        {
            md.AppendLine();
            md.AppendLine(c, $"## Sparsity search ({search.Method}): chose {search.Chosen:P1} in {search.Points.Count} rounds");
            md.AppendLine();
            md.AppendLine("| round | sparsity | accuracy | agreement | constraints |");
            md.AppendLine("| ---: | ---: | ---: | ---: | --- |");
            for (var i = 0; i < search.Points.Count; i++)
            {
                var p = search.Points[i];
                md.AppendLine(c, $"| {i + 1} | {p.Sparsity:P1} | {(p.Accuracy is { } pa ? pa.ToString("P2", c) : "")} | {p.Agreement:P2} | {(p.Feasible ? "met" : "not met")} |");
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
