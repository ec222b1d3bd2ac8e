using System.Text;
using static Compress.Core.Reports.Markup;

namespace Compress.Core.Reports;

/// <summary>
/// The report as one self-contained page (<c>--report x.html</c>): the summary, the per-layer charts (sensitivity,
/// sparsity and bits, bytes before and after), the fidelity-versus-size curve of the allocation's rounds and of the
/// sparsity search, and the tables. No script, no web font, no link out: it opens from disk without a server. The
/// markup is XHTML-compatible (an XML parser reads it) and carries no date, so the same report gives the same bytes.
/// </summary>
public static class HtmlReport
{
    private static readonly Dictionary<int, (string Name, string Fill)> BitColors = new()
    {
        [4] = ("4 bits", "#e8731a"),
        [8] = ("8 bits", "#2f6fb0"),
        [16] = ("16 bits", "#3a9e8f"),
        [32] = ("32 bits (float)", "#8f8f8f"),
    };

    private const string Style = """
        body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px auto; max-width: 1000px; padding: 0 16px; color: #1d1d1d; }
        h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ccc; } h3 { font-size: 1.05em; }
        table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
        th, td { border: 1px solid #d4d4d4; padding: 3px 8px; text-align: left; vertical-align: top; }
        th { background: #f0f0f0; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
        td.name { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.92em; word-break: break-all; }
        .muted { color: #666; } .bad { color: #b00020; font-weight: 600; } .good { color: #1b7a32; }
        li.warning { color: #8a4b00; } .caption { color: #555; font-size: 0.88em; margin: 0.2em 0 0.5em; }
        .chart-box { width: fit-content; max-width: 100%; max-height: 640px; overflow: auto; border: 1px solid #ddd; margin-bottom: 1em; }
        svg.chart { display: block; } svg.chart text.label { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 10.5px; }
        svg.chart text.tick { fill: #555; font-size: 10px; } svg.chart text.chosen-label { font-weight: bold; }
        """;

    public static string Write(CompressionReport r)
    {
        var h = new StringBuilder();
        h.Append("<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n");
        h.Append("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n");
        h.Append($"<title>Compression report: {Escape(Path.GetFileName(r.Model))}</title>\n<style>{Style}</style>\n</head>\n<body>\n");
        h.Append($"<h1>Compression report: {Escape(Path.GetFileName(r.Model))}</h1>\n");
        h.Append($"<p>Steps: {Escape(string.Join(" → ", r.Steps))}. Output: <code>{Escape(Path.GetFileName(r.Output))}</code>.</p>\n");
        Summary(h, r);
        Remarks(h, r);
        Outputs(h, r);
        Stages(h, r);
        LayerCharts(h, r);
        if (r.Allocation is { } allocation)
        {
            Allocation(h, r, allocation);
        }

        if (r.Search is { } search)
        {
            Search(h, r, search);
        }

        LayerTable(h, r);
        h.Append("</body>\n</html>\n");
        return h.ToString();
    }

    private static void Summary(StringBuilder h, CompressionReport r)
    {
        h.Append("<h2>Summary</h2>\n<table class=\"summary\">\n<tr><th></th><th class=\"num\">original</th><th class=\"num\">compressed</th></tr>\n");
        Row(h, "file size", $"{Count(r.Size.OriginalBytes)} B", $"{Count(r.Size.CompressedBytes)} B ({Number(r.Size.Ratio, "0.000")}×)");
        Row(h, "weights", Count(r.Size.OriginalParameters), $"{Percent(r.Size.OverallSparsity)} zero");
        if (r.Metrics is { } m)
        {
            if (m.OriginalAccuracy is { } a && m.CompressedAccuracy is { } b)
            {
                Row(h, $"accuracy ({Count(m.Samples)} samples)", Percent(a, 2), $"{Percent(b, 2)} (drop {Number((a - b) * 100, "0.00")} pp)");
            }

            if (m.Agreement is { } agreement)
            {
                Row(h, "top-1 agreement", "", $"{Percent(agreement, 2)} of {Count(m.AgreementPredictions)} predictions");
            }

            if (m.MeanCosine is { } cosine)
            {
                Row(h, "cosine similarity (mean, 1st percentile)", "", $"{Number(cosine, "0.0000")}, {Number(m.P1Cosine, "0.0000")}");
            }

            Row(h, "output SQNR", "", $"{Number(m.SqnrDb, "0.0")} dB");
        }

        if (r.Latency is { } l)
        {
            Row(h, "latency batch 1 (1 thread, median)", $"{Number(l.OriginalBatch1Ms, "0.000")} ms", $"{Number(l.CompressedBatch1Ms, "0.000")} ms");
            Row(h, $"latency batch {l.BatchN}", $"{Number(l.OriginalBatchNMs, "0.000")} ms", $"{Number(l.CompressedBatchNMs, "0.000")} ms");
            foreach (var form in l.Forms ?? [])
            {
                Row(h, $"weight-only form {form.Form}{(form.Shipped ? " (shipped)" : "")}, batch 1", "", $"{Number(form.Batch1Ms, "0.000")} ms");
            }
        }

        h.Append("</table>\n");
    }

    private static void Row(StringBuilder h, string name, string original, string compressed) =>
        h.Append($"<tr><td>{Escape(name)}</td><td class=\"num\">{Escape(original)}</td><td class=\"num\">{Escape(compressed)}</td></tr>\n");

    private static void Remarks(StringBuilder h, CompressionReport r)
    {
        var warnings = r.Warnings ?? [];
        if (r.Constraints.Count + r.Notes.Count + warnings.Count == 0 && r.Latency?.CompressedIsSlower != true)
        {
            return;
        }

        h.Append("<ul class=\"remarks\">\n");
        foreach (var c in r.Constraints)
        {
            h.Append($"<li class=\"constraint\">constraint {Escape(c.Name)}: limit {Number(c.Limit, "0.####")}, measured {Number(c.Measured, "0.####")} — ");
            h.Append(c.Met ? "<span class=\"good\">met</span></li>\n" : "<span class=\"bad\">NOT met</span></li>\n");
        }

        if (r.Latency?.CompressedIsSlower == true)
        {
            h.Append("<li class=\"warning\"><strong>The compressed model is slower than the original on this machine</strong> (see latency above).</li>\n");
        }

        foreach (var note in r.Notes)
        {
            h.Append($"<li class=\"note\">{Escape(note)}</li>\n");
        }

        foreach (var w in warnings)
        {
            h.Append($"<li class=\"warning\"><strong>warning {Escape(w.Code)}</strong>: {Escape(w.Message)}</li>\n");
        }

        h.Append("</ul>\n");
    }

    private static void Outputs(StringBuilder h, CompressionReport r)
    {
        if (r.Metrics is not { Outputs.Count: > 0 } m)
        {
            return;
        }

        h.Append($"<h2>Fidelity per output</h2>\n<p class=\"caption\">{Count(m.Samples)} samples; judged: <code>{Escape(m.Output)}</code>.</p>\n<table class=\"outputs\">\n");
        h.Append("<tr><th>output</th><th>kind</th><th>shape</th><th class=\"num\">accuracy</th><th class=\"num\">agreement</th><th class=\"num\">cosine mean</th><th class=\"num\">cosine 1st pct</th><th class=\"num\">SQNR</th></tr>\n");
        foreach (var o in m.Outputs)
        {
            var shape = "[" + string.Join(", ", o.Shape.Select(d => d < 0 ? "N" : Count(d))) + "]";
            h.Append($"<tr><td class=\"name\">{Escape(o.Name)}</td><td>{Escape(Fidelity.OutputKinds.Name(o.Kind))}</td><td>{Escape(shape)}</td>");
            h.Append($"<td class=\"num\">{Percent(o.CompressedAccuracy, 2)}</td><td class=\"num\">{Percent(o.Agreement, 2)}</td><td class=\"num\">{Number(o.MeanCosine, "0.0000")}</td>");
            h.Append($"<td class=\"num\">{Number(o.P1Cosine, "0.0000")}</td><td class=\"num\">{Number(o.SqnrDb, "0.0")} dB</td></tr>\n");
        }

        h.Append("</table>\n");
    }

    /// <summary>Sensitivity (allocation only), sparsity and bits, bytes before and after: one row per layer, in the model's order.</summary>
    private static void LayerCharts(StringBuilder h, CompressionReport r)
    {
        var allocated = r.Allocation?.Layers;
        if (r.Layers.Count == 0 && allocated is not { Count: > 0 })
        {
            return;
        }

        h.Append("<h2>Per layer</h2>\n");
        if (allocated is { Count: > 0 })
        {
            if (allocated.Any(l => l.Sensitivity > 0 && double.IsFinite(l.Sensitivity)))
            {
                var rows = allocated.Select(l => new BarRow(l.Weight, [new BarSegment(l.Sensitivity, "sensitivity", "#7b4fa8")],
                    l.Sensitivity > 0 ? Number(l.Sensitivity, "0.###E+0") : "not measured")).ToList();
                Chart(h, "Sensitivity: Hutchinson trace of the loss Hessian over the layer's weights, per weight (logarithmic axis).",
                    SvgCharts.HorizontalBars("sensitivity", "Per-layer sensitivity", rows, BarScale.Logarithmic(allocated.Select(l => l.Sensitivity), t => Number(t, "0E+0")), []));
            }
            else
            {
                h.Append("<p class=\"caption\">Sensitivity: not measured for any layer (the allocation used the layer-wise error alone).</p>\n");
            }
        }

        var choices = allocated is { Count: > 0 }
            ? allocated.Select(l => (l.Weight, l.Sparsity, l.Bits)).ToList()
            : r.Layers.Select(l => (l.Weight, l.Sparsity, l.Bits)).ToList();
        var bits = choices.Select(c => c.Bits).Distinct().Order().ToList();
        Chart(h, allocated is { Count: > 0 }
                ? "Chosen sparsity (bar length) and bits (colour) per layer, as the allocation chose them."
                : "Sparsity (bar length) and bits (colour) per layer, as stored in the artifact.",
            SvgCharts.HorizontalBars("sparsity-bits", "Sparsity and bits per layer",
                choices.Select(c => new BarRow(c.Weight, [new BarSegment(c.Sparsity, "sparsity", BitColor(c.Bits).Fill)], $"{Percent(c.Sparsity)} zero, {c.Bits} bits")).ToList(),
                BarScale.Linear(1, t => Percent(t, 0)), bits.Select(BitColor).ToList()));

        var bytes = allocated is { Count: > 0 }
            ? allocated.Select(l => (l.Weight, Before: l.Parameters * 4.0, After: (double)l.Bytes)).ToList()
            : r.Layers.Select(l => (l.Weight, Before: l.Parameters * 4.0, After: EstimatedBytes(l))).ToList();
        Chart(h, (allocated is { Count: > 0 } ? "Bytes per layer: before (float32, 4 B a weight; wide grey bar) and after (as the writer stores the choice; narrow bar)."
                : "Bytes per layer: before (float32, 4 B a weight; wide grey bar) and after (narrow bar), estimated from the layer's format: stored values × bits, plus one bit a weight for a bitmask or 8 B a value for sparse indices; scales left out.")
                + $" Total {Bytes(bytes.Sum(b => b.Before))} → {Bytes(bytes.Sum(b => b.After))}.",
            SvgCharts.HorizontalBars("bytes", "Bytes per layer, before and after",
                bytes.Select(b => new BarRow(b.Weight, [new BarSegment(b.Before, "before", "#cfcfcf"), new BarSegment(b.After, "after", "#2f6fb0")],
                    $"{Bytes(b.Before)} → {Bytes(b.After)}")).ToList(),
                BarScale.Linear(bytes.Max(b => Math.Max(b.Before, b.After)), Bytes), [("before", "#cfcfcf"), ("after", "#2f6fb0")]));
    }

    private static void Allocation(StringBuilder h, CompressionReport r, AllocationFigures a)
    {
        h.Append($"<h2>Allocation</h2>\n<p>Solver: <strong>{Escape(a.Solver)}</strong>. Budget: {Escape(a.Budget)}. Proxy objective (Σ of the chosen options' errors): {Number(a.Objective, "0.####E+0")}.</p>\n");
        if (a.Rounds.Count > 0)
        {
            var series = FidelitySeries(a.Rounds.Select(p => (X: (double)p.Bytes, p.Accuracy, p.Agreement, p.Cosine, p.Chosen, Hollow: false,
                Label: $"round {p.Round} ({p.Label}): {Count(p.Bytes)} B")).ToList());
            Chart(h, "Fidelity against artifact size, one point per compress-and-evaluate round; the chosen round is ringed" +
                    (r.Metrics?.OriginalAccuracy is not null ? ", the dashed line is the original model's accuracy." : "."),
                SvgCharts.Curves("rounds", "Fidelity against size over the allocation's rounds", new CurveAxis("artifact size", Bytes),
                    new CurveAxis("fidelity", t => Number(t, "0.###")), series, Dense(r)));
            h.Append("<table class=\"rounds\">\n<tr><th class=\"num\">round</th><th>tried</th><th class=\"num\">bytes</th><th class=\"num\">accuracy</th><th class=\"num\">agreement</th><th class=\"num\">cosine</th><th></th></tr>\n");
            foreach (var p in a.Rounds)
            {
                h.Append($"<tr><td class=\"num\">{p.Round}</td><td>{Escape(p.Label)}</td><td class=\"num\">{Count(p.Bytes)}</td><td class=\"num\">{Percent(p.Accuracy, 2)}</td>");
                h.Append($"<td class=\"num\">{Percent(p.Agreement, 2)}</td><td class=\"num\">{Number(p.Cosine, "0.0000")}</td><td>{(p.Chosen ? "<strong>chosen</strong>" : "")}</td></tr>\n");
            }

            h.Append("</table>\n");
        }

        h.Append("<h3>Choice per layer</h3>\n<table class=\"allocation\">\n<tr><th>weight</th><th class=\"num\">parameters</th><th class=\"num\">sensitivity</th><th class=\"num\">sparsity</th>");
        h.Append("<th class=\"num\">bits</th><th class=\"num\">bytes</th><th class=\"num\">options</th><th class=\"num\">chosen option's error</th></tr>\n");
        foreach (var l in a.Layers)
        {
            var chosen = l.Options.FirstOrDefault(o => Math.Abs(o.Sparsity - l.Sparsity) < 1e-9 && o.Bits == l.Bits);
            h.Append($"<tr><td class=\"name\">{Escape(l.Weight)}</td><td class=\"num\">{Count(l.Parameters)}</td><td class=\"num\">{(l.Sensitivity > 0 ? Number(l.Sensitivity, "0.###E+0") : "—")}</td>");
            h.Append($"<td class=\"num\">{Percent(l.Sparsity)}</td><td class=\"num\">{l.Bits}</td><td class=\"num\">{Count(l.Bytes)}</td><td class=\"num\">{l.Options.Count}</td>");
            h.Append($"<td class=\"num\">{(chosen is null ? "" : Number(chosen.Error, "0.###E+0"))}</td></tr>\n");
        }

        h.Append("</table>\n");
    }

    private static void Search(StringBuilder h, CompressionReport r, SearchFigures s)
    {
        h.Append($"<h2>Sparsity search ({Escape(s.Method)})</h2>\n<p>Chose {Percent(s.Chosen)} in {s.Points.Count} rounds.</p>\n");
        if (s.Points.Count > 0)
        {
            var series = FidelitySeries(s.Points.Select((p, i) => (X: p.Sparsity, p.Accuracy, p.Agreement, p.Cosine,
                Chosen: Math.Abs(p.Sparsity - s.Chosen) < 1e-9 && p.Feasible, Hollow: !p.Feasible, Label: $"round {i + 1}: {Percent(p.Sparsity)} sparse")).ToList());
            Chart(h, "Fidelity against sparsity, one point per round; hollow points missed a constraint, the chosen one is ringed.",
                SvgCharts.Curves("search", "Fidelity against sparsity over the search's rounds", new CurveAxis("sparsity", t => Percent(t, 0)),
                    new CurveAxis("fidelity", t => Number(t, "0.###")), series, Dense(r)));
        }

        h.Append("<table class=\"search\">\n<tr><th class=\"num\">round</th><th class=\"num\">sparsity</th><th class=\"num\">accuracy</th><th class=\"num\">agreement</th><th class=\"num\">cosine</th><th>constraints</th></tr>\n");
        for (var i = 0; i < s.Points.Count; i++)
        {
            var p = s.Points[i];
            h.Append($"<tr><td class=\"num\">{i + 1}</td><td class=\"num\">{Percent(p.Sparsity)}</td><td class=\"num\">{Percent(p.Accuracy, 2)}</td><td class=\"num\">{Percent(p.Agreement, 2)}</td>");
            h.Append($"<td class=\"num\">{Number(p.Cosine, "0.0000")}</td><td>{(p.Feasible ? "met" : "<span class=\"bad\">not met</span>")}</td></tr>\n");
        }

        h.Append("</table>\n");
    }

    /// <summary>The work of the model at each stage: multiply-adds per sample and batch-1 latency.</summary>
    private static void Stages(StringBuilder h, CompressionReport r)
    {
        if (r.Stages is not { Count: > 0 } stages)
        {
            return;
        }

        h.Append("<h2>Work by stage</h2>\n<p class=\"caption\">One sample: multiply-adds of Conv/ConvTranspose/Gemm/MatMul (quantized forms as their float op); batch-1 latency, one thread, median.</p>\n");
        h.Append("<table>\n<tr><th>stage</th><th class=\"num\">multiply-adds</th><th class=\"num\">of the source</th><th class=\"num\">batch-1 latency</th></tr>\n");
        var first = stages[0].MultiplyAdds;
        foreach (var s in stages)
        {
            var share = s.MultiplyAdds is { } m && first is > 0 ? Percent(m / (double)first) : "";
            h.Append($"<tr><td class=\"name\">{Escape(s.Stage)}</td><td class=\"num\">{(s.MultiplyAdds is { } macs ? Count(macs) : "")}</td><td class=\"num\">{share}</td>");
            h.Append($"<td class=\"num\">{(s.Batch1Ms is { } ms ? Number(ms, "0.000") + " ms" : "")}</td></tr>\n");
        }

        h.Append("</table>\n");
    }

    private static void LayerTable(StringBuilder h, CompressionReport r)
    {
        h.Append("<h2>Layers</h2>\n<table class=\"layers\">\n<tr><th>weight</th><th>node</th><th>op</th><th class=\"num\">parameters</th><th class=\"num\">sparsity</th>");
        h.Append("<th class=\"num\">bits</th><th>format</th><th class=\"num\">relative error</th></tr>\n");
        foreach (var l in r.Layers)
        {
            h.Append($"<tr><td class=\"name\">{Escape(l.Weight)}</td><td class=\"name\">{Escape(l.Node)}</td><td>{Escape(l.OpType)}</td><td class=\"num\">{Count(l.Parameters)}</td>");
            h.Append($"<td class=\"num\">{Percent(l.Sparsity)}</td><td class=\"num\">{l.Bits}</td><td>{Escape(l.Format)}</td><td class=\"num\">{Number(l.RelativeError, "0.00E+0")}</td></tr>\n");
        }

        h.Append("</table>\n");
    }

    private static void Chart(StringBuilder h, string caption, string svg) =>
        h.Append($"<p class=\"caption\">{Escape(caption)}</p>\n<div class=\"chart-box\">{svg}</div>\n");

    /// <summary>One curve per figure the rounds measured (accuracy, agreement, cosine), each drawn only when some round has it.</summary>
    private static List<CurveSeries> FidelitySeries(IReadOnlyList<(double X, double? Accuracy, double? Agreement, double? Cosine, bool Chosen, bool Hollow, string Label)> points)
    {
        var series = new List<CurveSeries>();
        void Add(string name, string stroke, Func<(double X, double? Accuracy, double? Agreement, double? Cosine, bool Chosen, bool Hollow, string Label), double?> figure)
        {
            var drawn = points.Where(p => figure(p) is not null)
                .Select(p => new CurvePoint(p.X, figure(p)!.Value, $"{p.Label}, {name} {Number(figure(p), "0.0000")}", p.Chosen, p.Hollow)).ToList();
            if (drawn.Count > 0)
            {
                series.Add(new CurveSeries(name, stroke, drawn));
            }
        }

        Add("accuracy", "#2f6fb0", p => p.Accuracy);
        Add("agreement", "#e8731a", p => p.Agreement);
        Add("cosine", "#3a9e8f", p => p.Cosine);
        return series;
    }

    private static (double, string)? Dense(CompressionReport r) =>
        r.Metrics?.OriginalAccuracy is { } a ? (a, $"original accuracy {Percent(a, 2)}") : null;

    private static (string Name, string Fill) BitColor(int bits) => BitColors.TryGetValue(bits, out var c) ? c : ($"{bits} bits", "#7b4fa8");

    /// <summary>
    /// A layer's stored bytes when no allocation says them, from its format's words: the values kept times their
    /// bits, plus a bitmask (one bit a weight) or int64 indices (8 B a value) when the format says so.
    /// </summary>
    internal static double EstimatedBytes(LayerFigures l)
    {
        var bitmask = l.Format.EndsWith(" bitmask", StringComparison.Ordinal);
        var sparse = l.Format.EndsWith(" sparse", StringComparison.Ordinal);
        var values = bitmask || sparse ? Math.Round(l.Parameters * (1 - l.Sparsity)) : l.Parameters;
        return values * l.Bits / 8.0 + (bitmask ? Math.Ceiling(l.Parameters / 8.0) : 0) + (sparse ? values * 8 : 0);
    }
}
