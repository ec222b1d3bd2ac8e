using System.Globalization;
using System.Text;

namespace Compress.Core.Reports;

/// <summary>
/// Text into XHTML/SVG markup (the HTML report is well-formed XML, so a browser and an XML parser read the same
/// tree) and numbers into invariant text, so the same report gives the same bytes on every machine.
/// </summary>
internal static class Markup
{
    private static readonly CultureInfo C = CultureInfo.InvariantCulture;

    /// <summary>
    /// Escapes the five XML specials for text and attribute values; characters XML 1.0 cannot hold (control
    /// characters, lone surrogates) become U+FFFD, so an odd tensor name cannot break the document.
    /// </summary>
    public static string Escape(string? text)
    {
        if (string.IsNullOrEmpty(text))
        {
            return "";
        }

        var sb = new StringBuilder(text.Length + 16);
        for (var i = 0; i < text.Length; i++)
        {
            var ch = text[i];
            switch (ch)
            {
                case '&': sb.Append("&amp;"); break;
                case '<': sb.Append("&lt;"); break;
                case '>': sb.Append("&gt;"); break;
                case '"': sb.Append("&quot;"); break;
                case '\'': sb.Append("&#39;"); break;
                case '\t' or '\n' or '\r': sb.Append(ch); break;
                case < ' ' or '\uFFFE' or '\uFFFF': sb.Append('\uFFFD'); break;
                default:
                    if (char.IsHighSurrogate(ch) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
                    {
                        sb.Append(ch).Append(text[++i]);
                    }
                    else
                    {
                        sb.Append(char.IsSurrogate(ch) ? '\uFFFD' : ch);
                    }

                    break;
            }
        }

        return sb.ToString();
    }

    /// <summary>A coordinate or length in SVG user units: at most two decimals, never NaN.</summary>
    public static string Coord(double value) => (double.IsFinite(value) ? Math.Round(value, 2) : 0).ToString("0.##", C);

    /// <summary>A figure for people: <paramref name="format"/> in the invariant culture, "∞"/"−∞"/"n/a" for the non-finite.</summary>
    public static string Number(double value, string format) =>
        double.IsNaN(value) ? "n/a" : double.IsPositiveInfinity(value) ? "∞" : double.IsNegativeInfinity(value) ? "−∞" : value.ToString(format, C);

    public static string Number(double? value, string format) => value is { } v ? Number(v, format) : "";

    public static string Count(long value) => value.ToString("N0", C);

    public static string Percent(double value, int decimals = 1) => Number(value * 100, "0." + new string('0', decimals)) + "%";

    public static string Percent(double? value, int decimals = 1) => value is { } v ? Percent(v, decimals) : "";

    /// <summary>Bytes as B, KB, MB or GB (powers of 1000, as file sizes are shown elsewhere in the report).</summary>
    public static string Bytes(double bytes) => Math.Abs(bytes) switch
    {
        >= 1e9 => Number(bytes / 1e9, "0.##") + " GB",
        >= 1e6 => Number(bytes / 1e6, "0.##") + " MB",
        >= 1e3 => Number(bytes / 1e3, "0.##") + " KB",
        _ => Number(bytes, "0") + " B",
    };

    /// <summary>A long name cut in the middle (the end of a tensor name says most: <c>…layer.11.attention.self.query.weight</c>).</summary>
    public static string Shorten(string text, int max)
    {
        if (text.Length <= max)
        {
            return text;
        }

        var head = Math.Max(4, max / 3);
        var tail = max - head - 1;
        return text[..head] + "…" + text[^tail..];
    }
}
