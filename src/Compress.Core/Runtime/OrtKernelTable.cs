using System.Reflection;

namespace Compress.Core.Runtime;

/// <summary>
/// ONNX Runtime's CPU kernel registrations (from its OperatorKernels.md, shipped as an embedded resource):
/// which (domain, op, opset range) exists and with which element types. A document's view; the runtime loading
/// the model stays the final judge.
/// </summary>
public sealed class OrtKernelTable
{
    private readonly List<Row> _rows;

    private OrtKernelTable(List<Row> rows) => _rows = rows;

    public static OrtKernelTable Cpu { get; } = Load();

    public sealed record Row(string Domain, string Op, int Since, int? Until, IReadOnlyDictionary<string, string[]> Types);

    /// <summary>The kernel row that serves <paramref name="op"/> at <paramref name="opset"/>, or null.</summary>
    public Row? Find(string domain, string op, long opset)
    {
        var d = string.IsNullOrEmpty(domain) ? "ai.onnx" : domain;
        return _rows.Where(r => r.Domain == d && r.Op == op && r.Since <= opset && (r.Until is null || opset <= r.Until))
            .OrderByDescending(r => r.Since).FirstOrDefault();
    }

    /// <summary>Whether any type constraint of the op's kernel lists <paramref name="elementType"/> (e.g. "float16").</summary>
    public bool Supports(string domain, string op, long opset, string elementType) =>
        Find(domain, op, opset) is { } row && row.Types.Values.Any(v => v.Contains(elementType));

    private static OrtKernelTable Load()
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream("ort-cpu-kernels.tsv")
            ?? throw new InvalidOperationException("ort-cpu-kernels.tsv resource missing");
        using var reader = new StreamReader(stream);
        var rows = new List<Row>();
        reader.ReadLine();
        while (reader.ReadLine() is { } line)
        {
            var f = line.Split('\t');
            var types = f[4].Split(';', StringSplitOptions.RemoveEmptyEntries)
                .Select(t => t.Split('=', 2)).Where(p => p.Length == 2)
                .GroupBy(p => p[0]).ToDictionary(g => g.Key, g => g.First()[1].Split(','));
            rows.Add(new Row(f[0], f[1], int.Parse(f[2]), f[3].Length == 0 ? null : int.Parse(f[3]), types));
        }

        return new OrtKernelTable(rows);
    }
}
