using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Spec;

namespace Compress.Core.Passes.Quantization;

/// <summary>
/// Which form a weight-only step writes each weight in (<c>quantize.form</c>, algorithms.md §11): <c>kernel</c> —
/// MatMulNBits / GatherBlockQuantized, the weights staying packed in memory and dequantized on every call; <c>float</c> —
/// the same codes unpacked to float32 by ONNX Runtime at load (<see cref="UnpackedBlocks.Store"/>); <c>int8</c> — the
/// same codes turned into int8 with one scale per output column at load and multiplied by DynamicQuantizeMatMul in int8
/// (<see cref="UnpackedBlocks.StoreInt8"/>; tables, which a Gather only copies, take the float form); <c>auto</c> (the
/// default) — int8 for every MatMul/Gemm (measured faster than float32 and MatMulNBits at 1, 32 and 64 rows per sample),
/// tables float where their Gather returns more than one row per sample at batch 1 (from one calibration sample's shapes)
/// and GatherBlockQuantized otherwise; kernel throughout without calibration data (nothing to read the tables' shapes
/// from, nor to check the int8 activations on) or when a later step of the spec still reads the weights.
/// </summary>
internal sealed class WeightForms
{
    private readonly string _form;
    private readonly IReadOnlyDictionary<string, long> _rows;
    private readonly bool _opsetAllows;
    private int _tables;
    private readonly List<string> _kept = [];
    private readonly List<string> _floated = [];
    private readonly List<string> _shared = [];

    public WeightForms(CompressionContext context, QuantizeStep step)
    {
        _opsetAllows = (context.Model.GetOpsetVersion("") ?? 1) >= UnpackedBlocks.MinOpset;
        var last = context.Spec.Steps.Count == 0 || ReferenceEquals(context.Spec.Steps[^1], step);
        _form = step.Form == "auto" && (!context.HasCalibration || !last) ? "kernel" : step.Form;
        var graph = context.Model.Graph;
        var tables = graph.Nodes.Where(n => n.OpType == "Gather" && string.IsNullOrEmpty(n.Domain) && graph.GetInitializer(n.Input[0]) is not null).Select(n => n.Output[0]).ToList();
        _rows = _form == "auto" && _opsetAllows && tables.Count > 0
            ? UnpackedBlocks.RowsPerSample(context, tables)
            : new Dictionary<string, long>(StringComparer.Ordinal);
    }

    /// <summary>
    /// The form the MatMul/Gemm weight <paramref name="use"/> gets: <c>auto</c> takes int8 at any row count (measured
    /// faster than float32 and MatMulNBits at 1, 32 and 64 rows per sample: algorithms.md §11). Two cases take the float
    /// form instead: int8 for a Gemm whose bias is not a 1-D constant (DynamicQuantizeMatMul has no place for it), and
    /// MatMulNBits for a weight that a node other than the step's plain readers in its layout (<paramref name="selected"/>)
    /// also reads — MatMulNBits serves one layout, while the float form's chain rebuilds the weight for every reader.
    /// </summary>
    public WeightForm For(OnnxGraph graph, WeightUse use, IReadOnlyDictionary<NodeProto, WeightUse> selected)
    {
        var node = use.Node;
        var unpack = _opsetAllows && _form != "kernel";
        if (!unpack && _form != "kernel")
        {
            _kept.Add(OnnxGraph.Describe(node));
        }

        var form = !unpack ? WeightForm.Kernel : _form == "float" ? WeightForm.Float : WeightForm.Int8;
        if (form == WeightForm.Int8 && !DynamicQuantizer.Takes(graph, node))
        {
            _floated.Add(OnnxGraph.Describe(node));
            return WeightForm.Float;
        }

        if (form == WeightForm.Kernel && _opsetAllows && graph.GetConsumers(use.Weight.Name).FirstOrDefault(r => r != node
                && !(selected.TryGetValue(r, out var other) && other.OutputAxis == use.OutputAxis && WeightSelection.IsPlainMatMul(r))) is { } reader)
        {
            _shared.Add($"weight-only: '{use.Weight.Name}' unpacked at load rather than MatMulNBits, '{OnnxGraph.Describe(reader)}' also reading it in another layout or as another op");
            return WeightForm.Float;
        }

        return form;
    }

    /// <summary>Whether a table read by <paramref name="gathers"/> gets the float form.</summary>
    public bool UnpacksTable(IReadOnlyList<NodeProto> gathers)
    {
        var unpack = _opsetAllows && gathers.Count > 0 && gathers.All(g => g.OpType == "Gather" && Chosen(g.Output[0]));
        if (unpack)
        {
            _tables++;
        }

        return unpack;
    }

    /// <summary>Whether the table whose Gather returns <paramref name="input"/> is unpacked: always for float and int8, by its rows for auto.</summary>
    private bool Chosen(string input) => _form switch
    {
        "float" or "int8" => true,
        "auto" => _rows.TryGetValue(input, out var rows) && UnpackedBlocks.Faster(rows),
        _ => false,
    };

    /// <summary>
    /// One note for the step: how many weights were written in the int8 form and the float form, how many tables
    /// unpacked at load, and which stayed MatMulNBits.
    /// </summary>
    public void Note(CompressionContext context, int unpacked, int int8)
    {
        context.Notes.AddRange(_shared);
        if (_form == "kernel")
        {
            return;
        }

        if (unpacked + int8 + _tables == 0)
        {
            context.Notes.Add($"weight-only: form '{_form}' kept MatMulNBits for all {_kept.Count} layers ({Why})");
            return;
        }

        var why = _form == "auto" ? "form 'auto' (int8 arithmetic for weights; tables unpacked where a Gather returns more than one row per sample)" : $"form '{_form}'";
        var parts = new List<string>();
        if (int8 > 0)
        {
            parts.Add($"{int8} MatMul/Gemm weight{(int8 == 1 ? "" : "s")} stored as packed codes that ONNX Runtime turns into int8 (one scale per output column) at load, multiplied by DynamicQuantizeMatMul in int8 as dynamic int8 is");
        }

        if (unpacked + _tables > 0)
        {
            var what = new[] { unpacked > 0 ? $"{unpacked} MatMul/Gemm weight{(unpacked == 1 ? "" : "s")}" : null, _tables > 0 ? $"{_tables} table{(_tables == 1 ? "" : "s")}" : null };
            parts.Add($"{string.Join(" and ", what.OfType<string>())} stored as packed codes that ONNX Runtime unpacks to float32 at load");
        }

        var note = $"weight-only: {why}: {string.Join("; ", parts)}; the file is the integer one";
        if (_floated.Count > 0)
        {
            note += $"; {_floated.Count} unpacked to float instead of int8 (a Gemm whose bias is not a 1-D constant): {string.Join(", ", _floated.Take(8))}";
        }

        if (_kept.Count > 0)
        {
            note += $"; {_kept.Count} kept MatMulNBits ({Why}): {string.Join(", ", _kept.Take(8))}{(_kept.Count > 8 ? ", …" : "")}";
        }

        context.Notes.Add(note);
    }

    private static string Why => "the chain needs opset 11";
}

/// <summary>The form of one weight-only layer (<see cref="WeightForms"/>).</summary>
internal enum WeightForm
{
    /// <summary>MatMulNBits: packed in memory, dequantized on every call.</summary>
    Kernel,

    /// <summary>Packed codes ONNX Runtime unpacks to the float32 weight at load.</summary>
    Float,

    /// <summary>Packed codes ONNX Runtime turns into per-column int8 at load, read by DynamicQuantizeMatMul.</summary>
    Int8,
}
