using System.Text;
using static Compress.Core.Reports.Markup;

namespace Compress.Core.Reports;

/// <summary>One bar of a row; bars of a row share the axis and are drawn in order, each thinner than the one before.</summary>
internal sealed record BarSegment(double Value, string Class, string Fill);

/// <summary>One row of a horizontal bar chart: a layer, its bars and the figures written after them.</summary>
internal sealed record BarRow(string Layer, IReadOnlyList<BarSegment> Bars, string Text);

/// <summary>A bar axis: linear from 0 or logarithmic over whole decades (sensitivities span orders of magnitude).</summary>
internal sealed record BarScale(double Min, double Max, bool Log, Func<double, string> Tick)
{
    public static BarScale Linear(double max, Func<double, string> tick) => new(0, max > 0 && double.IsFinite(max) ? max : 1, false, tick);

    public static BarScale Logarithmic(IEnumerable<double> values, Func<double, string> tick)
    {
        var positive = values.Where(v => v > 0 && double.IsFinite(v)).ToList();
        var lo = positive.Count == 0 ? 1e-3 : Math.Pow(10, Math.Floor(Math.Log10(positive.Min())));
        var hi = positive.Count == 0 ? 1 : Math.Pow(10, Math.Ceiling(Math.Log10(positive.Max())));
        return new(lo, hi > lo ? hi : lo * 10, true, tick);
    }

    /// <summary>The bar's share of the plot width, in [0, 1].</summary>
    public double Fraction(double value)
    {
        if (!(value > 0) || !double.IsFinite(value))
        {
            return value == double.PositiveInfinity ? 1 : 0;
        }

        var f = Log ? (Math.Log10(value) - Math.Log10(Min)) / (Math.Log10(Max) - Math.Log10(Min)) : value / Max;
        return Math.Clamp(f, 0, 1);
    }

    public IEnumerable<double> Ticks()
    {
        if (Log)
        {
            for (var e = Math.Round(Math.Log10(Min)); e <= Math.Round(Math.Log10(Max)); e++)
            {
                yield return Math.Pow(10, e);
            }
        }
        else
        {
            foreach (var t in SvgCharts.NiceTicks(0, Max, 5))
            {
                yield return t;
            }
        }
    }
}

/// <summary>A point of a curve: where it is, what its tooltip says, whether it is the chosen round, whether its constraints failed (drawn hollow).</summary>
internal sealed record CurvePoint(double X, double Y, string Label, bool Chosen, bool Hollow);

internal sealed record CurveSeries(string Name, string Stroke, IReadOnlyList<CurvePoint> Points);

/// <summary>An axis of a curve chart: its title and how its ticks read.</summary>
internal sealed record CurveAxis(string Title, Func<double, string> Tick);

/// <summary>
/// Charts as inline SVG text: no script, no external font, sizes in user units, every name escaped. Per-layer
/// charts are horizontal bars, one 16-unit row per layer, so hundreds of layers stay readable in a scrolling box.
/// </summary>
internal static class SvgCharts
{
    public const int Width = 960;
    private const int LabelWidth = 370;
    private const int PlotWidth = 400;
    private const int RowHeight = 16;
    private const int AxisHeight = 34;
    private const int LabelChars = 58; // 10.5 px monospace: about 6.3 units a character; BERT names are 40–55

    public static string HorizontalBars(string chart, string title, IReadOnlyList<BarRow> rows, BarScale scale, IReadOnlyList<(string Name, string Fill)> legend)
    {
        var height = AxisHeight + rows.Count * RowHeight + 8;
        var svg = Open(chart, title, height);
        Legend(svg, legend, LabelWidth, 12);
        foreach (var tick in scale.Ticks())
        {
            var x = LabelWidth + scale.Fraction(tick) * PlotWidth;
            svg.Append($"<line class=\"grid\" x1=\"{Coord(x)}\" y1=\"{AxisHeight - 4}\" x2=\"{Coord(x)}\" y2=\"{height - 4}\" stroke=\"#ddd\"/>");
            svg.Append($"<text class=\"tick\" x=\"{Coord(x)}\" y=\"{AxisHeight - 7}\" text-anchor=\"middle\">{Escape(scale.Tick(tick))}</text>");
        }

        for (var i = 0; i < rows.Count; i++)
        {
            var row = rows[i];
            var y = AxisHeight + i * RowHeight;
            svg.Append($"<g class=\"row\" data-layer=\"{Escape(row.Layer)}\"><title>{Escape(row.Layer)}: {Escape(row.Text)}</title>");
            if (i % 2 == 1)
            {
                svg.Append($"<rect class=\"stripe\" x=\"0\" y=\"{y}\" width=\"{Width}\" height=\"{RowHeight}\" fill=\"#f6f6f6\"/>");
            }

            svg.Append($"<text class=\"label\" x=\"{LabelWidth - 6}\" y=\"{y + 12}\" text-anchor=\"end\">{Escape(Shorten(row.Layer, LabelChars))}</text>");
            var barHeight = RowHeight - 4.0;
            foreach (var bar in row.Bars)
            {
                var top = y + (RowHeight - barHeight) / 2;
                svg.Append($"<rect class=\"bar {Escape(bar.Class)}\" x=\"{LabelWidth}\" y=\"{Coord(top)}\" width=\"{Coord(scale.Fraction(bar.Value) * PlotWidth)}\" height=\"{Coord(barHeight)}\" fill=\"{bar.Fill}\"/>");
                barHeight *= 0.55;
            }

            svg.Append($"<text class=\"value\" x=\"{LabelWidth + PlotWidth + 8}\" y=\"{y + 12}\">{Escape(row.Text)}</text></g>");
        }

        return svg.Append("</svg>").ToString();
    }

    /// <summary>Curves over a shared x axis (e.g. fidelity against bytes); an optional dashed reference line (the dense model's figure).</summary>
    public static string Curves(string chart, string title, CurveAxis xAxis, CurveAxis yAxis, IReadOnlyList<CurveSeries> series, (double Y, string Label)? reference = null)
    {
        const int height = 380, left = 78, right = 40, top = 40, bottom = 56;
        var points = series.SelectMany(s => s.Points).Where(p => double.IsFinite(p.X) && double.IsFinite(p.Y)).ToList();
        var xs = points.Select(p => p.X).DefaultIfEmpty(0).ToList();
        var ys = points.Select(p => p.Y).Concat(reference is { } r && double.IsFinite(r.Y) ? [r.Y] : []).DefaultIfEmpty(0).ToList();
        var (x0, x1) = Padded(xs.Min(), xs.Max());
        var (y0, y1) = Padded(ys.Min(), ys.Max());
        double Px(double x) => left + (x - x0) / (x1 - x0) * (Width - left - right);
        double Py(double y) => height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom);

        var svg = Open(chart, title, height);
        Legend(svg, series.Select(s => (s.Name, s.Stroke)).ToList(), left, 14);
        foreach (var t in NiceTicks(x0, x1, 6))
        {
            svg.Append($"<line class=\"grid\" x1=\"{Coord(Px(t))}\" y1=\"{top}\" x2=\"{Coord(Px(t))}\" y2=\"{height - bottom}\" stroke=\"#e4e4e4\"/>");
            svg.Append($"<text class=\"tick\" x=\"{Coord(Px(t))}\" y=\"{height - bottom + 16}\" text-anchor=\"middle\">{Escape(xAxis.Tick(t))}</text>");
        }

        foreach (var t in NiceTicks(y0, y1, 6))
        {
            svg.Append($"<line class=\"grid\" x1=\"{left}\" y1=\"{Coord(Py(t))}\" x2=\"{Width - right}\" y2=\"{Coord(Py(t))}\" stroke=\"#e4e4e4\"/>");
            svg.Append($"<text class=\"tick\" x=\"{left - 6}\" y=\"{Coord(Py(t) + 4)}\" text-anchor=\"end\">{Escape(yAxis.Tick(t))}</text>");
        }

        svg.Append($"<rect class=\"frame\" x=\"{left}\" y=\"{top}\" width=\"{Width - left - right}\" height=\"{height - top - bottom}\" fill=\"none\" stroke=\"#999\"/>");
        svg.Append($"<text class=\"axis-title\" x=\"{Coord(left + (Width - left - right) / 2.0)}\" y=\"{height - 14}\" text-anchor=\"middle\">{Escape(xAxis.Title)}</text>");
        svg.Append($"<text class=\"axis-title\" transform=\"translate(16 {Coord(top + (height - top - bottom) / 2.0)}) rotate(-90)\" text-anchor=\"middle\">{Escape(yAxis.Title)}</text>");
        if (reference is { } line && double.IsFinite(line.Y))
        {
            svg.Append($"<line class=\"reference\" x1=\"{left}\" y1=\"{Coord(Py(line.Y))}\" x2=\"{Width - right}\" y2=\"{Coord(Py(line.Y))}\" stroke=\"#555\" stroke-dasharray=\"6 4\"/>");
            svg.Append($"<text class=\"tick\" x=\"{Width - right - 4}\" y=\"{Coord(Py(line.Y) - 5)}\" text-anchor=\"end\">{Escape(line.Label)}</text>");
        }

        foreach (var s in series)
        {
            var drawn = s.Points.Where(p => double.IsFinite(p.X) && double.IsFinite(p.Y)).OrderBy(p => p.X).ThenBy(p => p.Y).ToList();
            svg.Append($"<g class=\"series\" data-series=\"{Escape(s.Name)}\">");
            if (drawn.Count > 1)
            {
                svg.Append($"<polyline fill=\"none\" stroke=\"{s.Stroke}\" stroke-width=\"1.5\" points=\"{string.Join(" ", drawn.Select(p => Coord(Px(p.X)) + "," + Coord(Py(p.Y))))}\"/>");
            }

            foreach (var p in drawn)
            {
                var (cx, cy) = (Coord(Px(p.X)), Coord(Py(p.Y)));
                svg.Append($"<circle class=\"point{(p.Chosen ? " chosen" : "")}\" cx=\"{cx}\" cy=\"{cy}\" r=\"{(p.Chosen ? 6 : 4)}\" fill=\"{(p.Hollow ? "#fff" : s.Stroke)}\" stroke=\"{s.Stroke}\" stroke-width=\"{(p.Chosen ? "3" : "1.5")}\">");
                svg.Append($"<title>{Escape(s.Name)}: {Escape(p.Label)}</title></circle>");
                if (p.Chosen)
                {
                    svg.Append($"<text class=\"chosen-label\" x=\"{cx}\" y=\"{Coord(Py(p.Y) - 11)}\" text-anchor=\"middle\">chosen</text>");
                }
            }

            svg.Append("</g>");
        }

        return svg.Append("</svg>").ToString();
    }

    /// <summary>About <paramref name="count"/> round ticks (1, 2 or 5 times a power of ten) covering [lo, hi].</summary>
    public static IEnumerable<double> NiceTicks(double lo, double hi, int count)
    {
        if (!(hi > lo) || !double.IsFinite(lo) || !double.IsFinite(hi))
        {
            yield return double.IsFinite(lo) ? lo : 0;
            yield break;
        }

        var raw = (hi - lo) / count;
        var magnitude = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        var step = (raw / magnitude) switch { <= 1 => 1, <= 2 => 2, <= 5 => 5, _ => 10 } * magnitude;
        for (var i = Math.Ceiling(lo / step - 1e-9); i * step <= hi + step * 1e-9; i++)
        {
            yield return Math.Round(i * step, 12) + 0.0; // + 0.0 turns −0 into 0, which would print as "-0"
        }
    }

    private static (double Lo, double Hi) Padded(double lo, double hi)
    {
        var span = hi - lo;
        if (!(span > 0))
        {
            var pad = Math.Abs(lo) > 0 ? Math.Abs(lo) * 0.05 : 1;
            return (lo - pad, hi + pad);
        }

        return (lo - span * 0.08, hi + span * 0.08);
    }

    private static StringBuilder Open(string chart, string title, int height) =>
        new StringBuilder().Append($"<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" data-chart=\"{Escape(chart)}\" width=\"{Width}\" height=\"{height}\" ")
            .Append($"viewBox=\"0 0 {Width} {height}\" role=\"img\" aria-label=\"{Escape(title)}\" font-family=\"sans-serif\" font-size=\"11\"><title>{Escape(title)}</title>");

    private static void Legend(StringBuilder svg, IReadOnlyList<(string Name, string Fill)> entries, int x, int y)
    {
        foreach (var (name, fill) in entries)
        {
            svg.Append($"<g class=\"legend\"><rect x=\"{x}\" y=\"{y - 9}\" width=\"10\" height=\"10\" fill=\"{fill}\"/><text x=\"{x + 14}\" y=\"{y}\">{Escape(name)}</text></g>");
            x += 24 + (int)(name.Length * 6.2);
        }
    }
}
