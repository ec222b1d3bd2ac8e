// Checks the operator-support table the engine and the analyzers use (src/Compress.Spec/Kernels/ort-cpu-kernels.tsv,
// taken from ONNX Runtime's OperatorKernels.md) against the ONNX Runtime this repository ships:
//   dotnet run --project eng/KernelProbe -c Release -- [--source <tsv>] [--write]
// For every ai.onnx row, a one-node model at the row's first opset asks ONNX Runtime for a session, once per element
// type: the documented types of the row's first type constraint, and the other tensor types too. Documented types
// the runtime refuses, and undocumented ones it accepts, are printed; with --write the table is corrected both ways
// and written to src/Compress.Spec/Kernels/ort-cpu-kernels.tsv. The process exits 1 when the runtime contradicts the
// table and --write was not given, so a runtime upgrade cannot drift silently.
using System.Globalization;
using Compress.Core.Runtime;
using Compress.Spec.Kernels;

var root = FindRoot();
var target = Path.Combine(root, "src", "Compress.Spec", "Kernels", "ort-cpu-kernels.tsv");
var source = args.SkipWhile(a => a != "--source").Skip(1).FirstOrDefault() ?? target;
var write = args.Contains("--write");
var lines = File.ReadAllLines(source);
var table = OrtKernelTable.Parse(string.Join("\n", lines));
var check = KernelProbe.Check(table, findUndocumented: true);
var (counts, missing, found) = (check.Counts, check.Missing, check.Undocumented);

Console.WriteLine($"ONNX Runtime {typeof(Microsoft.ML.OnnxRuntime.InferenceSession).Assembly.GetName().Version}, table {source}");
Console.WriteLine();
Console.WriteLine("| documented (op, opset, type) probed | present | missing (documented, refused) | inconclusive (op needs attributes/inputs) | undocumented but present |");
Console.WriteLine("| ---: | ---: | ---: | ---: | ---: |");
Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"| {counts.Values.Sum()} | {counts.GetValueOrDefault(KernelProbeResult.Present)} | {counts.GetValueOrDefault(KernelProbeResult.Missing) + counts.GetValueOrDefault(KernelProbeResult.EmulatedByCasts)} | {counts.GetValueOrDefault(KernelProbeResult.Inconclusive)} | {found.Count} |"));
foreach (var (row, type) in missing)
{
    Console.WriteLine($"missing: {row.Op} opset {row.Since} {type}");
}

foreach (var (row, type) in found)
{
    Console.WriteLine($"undocumented: {row.Op} opset {row.Since} {type}");
}

if (write)
{
    var output = new List<string> { lines[0] };
    foreach (var line in lines.Skip(1))
    {
        var f = line.Split('\t');
        if (f.Length < 5 || f[0] != "ai.onnx")
        {
            output.Add(line);
            continue;
        }

        bool Same((KernelRow Row, string Type) m) => m.Row.Op == f[1] && m.Row.Since.ToString(CultureInfo.InvariantCulture) == f[2];
        var refused = missing.Where(Same).Select(m => m.Type).ToHashSet();
        var added = found.Where(Same).Select(m => m.Type).ToList();
        var constraints = f[4].Split(';').Select((c, i) =>
        {
            var parts = c.Split('=', 2);
            return i == 0 && parts.Length == 2
                ? parts[0] + "=" + string.Join(",", parts[1].Split(',').Where(t => !refused.Contains(t)).Concat(added).Order(StringComparer.Ordinal))
                : c;
        });
        f[4] = string.Join(";", constraints);
        output.Add(string.Join("\t", f));
    }

    File.WriteAllText(target, string.Join("\n", output) + "\n");
    Console.WriteLine($"wrote {target}");
    return 0;
}

return missing.Count + found.Count == 0 ? 0 : 1;

static string FindRoot()
{
    for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
    {
        if (File.Exists(Path.Combine(dir.FullName, "Compress.Build.sln")))
        {
            return dir.FullName;
        }
    }

    throw new DirectoryNotFoundException("Compress.Build.sln");
}
