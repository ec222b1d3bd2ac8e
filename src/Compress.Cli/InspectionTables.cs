using System.Globalization;
using Compress.Core.Inspection;
using Spectre.Console;

namespace Compress.Cli;

/// <summary>Renders an inspection as tables; plain text when the output is not a terminal.</summary>
internal static class InspectionTables
{
    private const int MaxRows = 25;

    public static void Write(ModelInspection m, TextWriter writer)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(writer),
            Ansi = writer == Console.Out && !Console.IsOutputRedirected ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = writer == Console.Out && !Console.IsOutputRedirected ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
        });
        if (writer != Console.Out || Console.IsOutputRedirected)
        {
            console.Profile.Width = 120;
        }

        // Header lines go straight to the writer: long paths must not be wrapped into the next line.
        writer.WriteLine($"{m.Path}  {Size(m.FileBytes)}  IR v{m.IrVersion}  producer: {m.ProducerName} {m.ProducerVersion}".TrimEnd());
        writer.WriteLine($"opsets: {string.Join(", ", m.Opsets.Select(o => $"{o.Domain} {o.Version}"))}");
        writer.WriteLine(FormattableString.Invariant(
            $"nodes: {m.Totals.Nodes}   weights: {m.Totals.InitializerCount}   parameters: {m.Totals.Parameters:N0}   weight bytes: {Size(m.Totals.InitializerBytes)}"));

        var io = new Table().Title("inputs and outputs").AddColumns("", "name", "type", "shape");
        foreach (var (kind, list) in new[] { ("in", m.Inputs), ("out", m.Outputs) })
        {
            foreach (var v in list)
            {
                io.AddRow(kind, Markup.Escape(v.Name), Markup.Escape(v.Type), Markup.Escape(Shape(v.Shape)));
            }
        }

        console.Write(io);

        var ops = new Table().Title("operators").AddColumns("domain", "op", "count");
        foreach (var o in m.Operators)
        {
            ops.AddRow(o.Domain.Length == 0 ? "ai.onnx" : Markup.Escape(o.Domain), Markup.Escape(o.OpType), o.Count.ToString(CultureInfo.InvariantCulture));
        }

        console.Write(ops);

        var layers = new Table().Title($"layers (largest {Math.Min(MaxRows, m.Layers.Count)} of {m.Layers.Count})").AddColumns("node", "op", "parameters", "bytes");
        foreach (var l in m.Layers.OrderByDescending(l => l.Bytes).Take(MaxRows))
        {
            layers.AddRow(Markup.Escape(l.Node), Markup.Escape(l.OpType), l.Parameters.ToString("N0", CultureInfo.InvariantCulture), Size(l.Bytes));
        }

        console.Write(layers);

        var weights = new Table().Title($"weights (largest {Math.Min(MaxRows, m.Initializers.Count)} of {m.Initializers.Count})")
            .AddColumns("name", "type", "shape", "parameters", "bytes", "storage");
        foreach (var i in m.Initializers.OrderByDescending(i => i.Bytes).Take(MaxRows))
        {
            weights.AddRow(Markup.Escape(i.Name), i.ElementType, Markup.Escape(Shape(i.Shape.Cast<object?>().ToList())),
                i.Parameters.ToString("N0", CultureInfo.InvariantCulture), Size(i.Bytes), i.Storage);
        }

        console.Write(weights);

        if (m.ExternalDataFiles.Count > 0)
        {
            var files = new Table().Title("external data").AddColumns("location", "bytes", "tensors");
            foreach (var f in m.ExternalDataFiles)
            {
                files.AddRow(Markup.Escape(f.Location), Size(f.Bytes), f.Tensors.ToString(CultureInfo.InvariantCulture));
            }

            console.Write(files);
        }
    }

    private static string Shape(IReadOnlyList<object?>? shape) =>
        shape is null ? "?" : "[" + string.Join(", ", shape.Select(d => d?.ToString() ?? "?")) + "]";

    internal static string Size(long bytes) => bytes switch
    {
        >= 1L << 30 => $"{bytes / (double)(1L << 30):0.00} GiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):0.00} MiB",
        >= 1L << 10 => $"{bytes / 1024.0:0.0} KiB",
        _ => $"{bytes} B",
    };
}
