using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Spec;

namespace Compress.Core.Passes.Quantization;

/// <summary>
/// Which form a weight-only step writes each weight in (<c>quantize.form</c>, algorithms.md §11): <c>kernel</c> —
/// MatMulNBits / GatherBlockQuantized, the weights staying packed in memory and dequantized on every call; <c>float</c> —
/// the same codes unpacked by ONNX Runtime at load (<see cref="UnpackedBlocks"/>); <c>auto</c> (the default) — float for
/// the layers that see more than one row per sample at batch 1 (a sequence's tokens), kernel for the rest, and kernel
/// throughout without calibration data to tell, or when a later step of the spec still reads the weights.
/// </summary>
internal sealed class WeightForms
{
    private readonly string _form;
    private readonly IReadOnlyDictionary<string, long> _rows;
    private readonly bool _opsetAllows;
    private int _tables;
    private readonly List<string> _kept = [];

    public WeightForms(CompressionContext context, QuantizeStep step, IReadOnlyList<WeightUse> selected)
    {
        _opsetAllows = (context.Model.GetOpsetVersion("") ?? 1) >= UnpackedBlocks.MinOpset;
        var last = context.Spec.Steps.Count == 0 || ReferenceEquals(context.Spec.Steps[^1], step);
        _form = step.Form == "auto" && (!context.HasCalibration || !last) ? "kernel" : step.Form;
        var graph = context.Model.Graph;
        var tables = graph.Nodes.Where(n => n.OpType == "Gather" && string.IsNullOrEmpty(n.Domain) && graph.GetInitializer(n.Input[0]) is not null).Select(n => n.Output[0]);
        _rows = _form == "auto" && _opsetAllows
            ? UnpackedBlocks.RowsPerSample(context, [.. selected.Select(u => u.Node.Input[0]).Concat(tables)])
            : new Dictionary<string, long>(StringComparer.Ordinal);
    }

    /// <summary>Whether the MatMul/Gemm <paramref name="node"/> gets the float form.</summary>
    public bool Unpacks(NodeProto node)
    {
        var unpack = _opsetAllows && Chosen(node.Input[0]);
        if (!unpack && _form != "kernel")
        {
            _kept.Add(OnnxGraph.Describe(node));
        }

        return unpack;
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

    private bool Chosen(string input) => _form switch
    {
        "float" => true,
        "auto" => _rows.TryGetValue(input, out var rows) && UnpackedBlocks.Faster(rows),
        _ => false,
    };

    /// <summary>One note for the step: how many weights and tables were unpacked at load, and which stayed MatMulNBits.</summary>
    public void Note(CompressionContext context, int unpacked)
    {
        if (_form == "kernel")
        {
            return;
        }

        if (unpacked + _tables == 0)
        {
            context.Notes.Add($"weight-only: form '{_form}' kept MatMulNBits for all {_kept.Count} layers ({Why})");
            return;
        }

        var why = _form == "auto" ? "form 'auto': they see more than one row per sample, where MatMulNBits is slower than float" : "form 'float'";
        var note = $"weight-only: {unpacked} MatMul/Gemm weight{(unpacked == 1 ? "" : "s")} and {_tables} table{(_tables == 1 ? "" : "s")} stored as packed codes that ONNX Runtime unpacks to float32 at load ({why}): "
            + "the file is the integer one, the speed and memory at run time float32's";
        if (_kept.Count > 0)
        {
            note += $"; {_kept.Count} kept MatMulNBits ({Why}): {string.Join(", ", _kept.Take(8))}{(_kept.Count > 8 ? ", …" : "")}";
        }

        context.Notes.Add(note);
    }

    private string Why => _opsetAllows ? "one row per sample at batch 1, where MatMulNBits is the faster" : "the chain needs opset 11";
}
