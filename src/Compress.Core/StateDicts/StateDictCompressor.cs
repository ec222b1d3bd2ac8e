using System.Runtime.InteropServices;
using System.Text.Json;
using Compress.Core.Diagnostics;
using Compress.Core.Passes.Pruning;
using Compress.Core.Passes.Quantization;
using Compress.Core.Reports;
using Compress.Core.Torch;
using Compress.Runtime.StateDicts;
using Compress.Spec;
using Compress.Spec.Methods;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.StateDicts;

/// <summary>
/// <c>Format="torchsharp"</c>: compresses a state dict written by TorchSharp's <c>Module.save</c>. A state dict has
/// no graph, so only weight-only methods apply: magnitude pruning (global or per layer), int8 (per row) and int4
/// (per row and block) symmetric quantization, fp16. The weights are the float32 tensors of rank ≥ 2 whose name
/// matches the step's <c>include</c>/<c>exclude</c> globs (biases and normalisation statistics stay as they are).
/// The artifact is a <see cref="CompressedStateDict"/> (restored into the module by <c>LoadInto</c>); each weight takes
/// the smallest of its dense and bitmask forms. Data-aware methods and constraints are refused at their spec position.
/// </summary>
public static class StateDictCompressor
{
    /// <summary>Compresses the state dict by the spec through the shared pipeline (<see cref="CompressionPipeline.Run"/>).</summary>
    public static CompressionReport Run(string modelPath, CompressionSpec spec, string outputPath, Action<string>? progress = null) =>
        CompressionPipeline.Run(modelPath, spec, outputPath, progress, measureLatency: false, format: ModelFormats.TorchSharp);

    /// <summary>The stored form: quantized codes (+ row scales), or float values; with a bit mask when that is smaller.</summary>
    internal static (string Encoding, List<StateDictTensor> Tensors, Tensor Decoded) Encode(string name, Tensor weight, (int Bits, int BlockSize) format)
    {
        var rows = weight.shape[0];
        var matrix = weight.reshape(rows, -1);
        var mask = matrix.ne(0).flatten();
        var nonzero = mask.count_nonzero().item<long>();
        var maskBytes = (weight.numel() + 7) / 8;
        switch (format.Bits)
        {
            case 8:
                var (q, scales, decoded8) = Int8(matrix);
                var scaleEntry = Entry(name + ".__scales", scales.to_type(ScalarType.Float32));
                if (nonzero + maskBytes < weight.numel())
                {
                    return ("bitmask-int8", [Entry(name, q.flatten().masked_select(mask)), Entry(name + ".__mask", PackBits(mask)), scaleEntry], decoded8.reshape(weight.shape));
                }

                return ("int8", [Entry(name, q.reshape(weight.shape)), scaleEntry], decoded8.reshape(weight.shape));
            case 4:
                var (codes, s, decoded4) = Int4(matrix, format.BlockSize);
                var packed = IntegerGrid.PackNibbles(codes.reshape(rows, -1));
                return ("int4", [Entry(name, packed), Entry(name + ".__scales", s.reshape(rows, -1))], decoded4.reshape(weight.shape));
            case 16:
                var half = weight.to_type(ScalarType.Float16);
                return ("fp16", [Entry(name, half)], half.to_type(ScalarType.Float32));
            default:
                if (nonzero * 4 + maskBytes < weight.numel() * 4)
                {
                    return ("bitmask-float32", [Entry(name, weight.flatten().masked_select(mask)), Entry(name + ".__mask", PackBits(mask))], weight);
                }

                return ("dense", [Entry(name, weight)], weight);
        }
    }

    /// <summary>
    /// <paramref name="weight"/> as <see cref="Encode"/> stores it, decoded — what a module restored from the artifact
    /// holds — without making the stored bytes (the finetune step rounds through it at every forward pass).
    /// </summary>
    internal static Tensor Rounded(Tensor weight, (int Bits, int BlockSize) format)
    {
        var matrix = weight.reshape(weight.shape[0], -1);
        return format.Bits switch
        {
            8 => Int8(matrix).Decoded.reshape(weight.shape),
            4 => Int4(matrix, format.BlockSize).Decoded.reshape(weight.shape),
            16 => weight.to_type(ScalarType.Float16).to_type(ScalarType.Float32),
            _ => weight.alias(),
        };
    }

    /// <summary>Symmetric int8 per row: codes, scales, and the decoded [rows, columns].</summary>
    private static (Tensor Codes, Tensor Scales, Tensor Decoded) Int8(Tensor matrix)
    {
        var (q, scales) = WeightQuantization.SymmetricInt8(matrix, 0);
        return (q, scales, WeightQuantization.Dequantize(q, scales, 0));
    }

    /// <summary>Symmetric int4 per row and block: codes, scales, and the decoded [rows, columns].</summary>
    private static (Tensor Codes, Tensor Scales, Tensor Decoded) Int4(Tensor matrix, int blockSize)
    {
        var padded = IntegerGrid.Blocks(matrix, blockSize);
        var grid = new IntegerGrid(4, Symmetric: true);
        var (s, z) = grid.Fit(padded, 2);
        var codes = grid.Codes(padded, s, z);
        return (codes, s, IntegerGrid.Unblocks(IntegerGrid.Dequantize(codes, s, z), matrix.shape[1]));
    }

    /// <summary>One bit per value, the first in the lowest bit of each byte.</summary>
    private static Tensor PackBits(Tensor mask)
    {
        var count = mask.numel();
        var bits = nn.functional.pad(mask.to_type(ScalarType.Byte), [0, (count + 7) / 8 * 8 - count]).reshape(-1, 8).to_type(ScalarType.Int32);
        return (bits * tensor(new[] { 1, 2, 4, 8, 16, 32, 64, 128 })).sum(1).to_type(ScalarType.Byte);
    }

    /// <summary>A state dict's entries as stored; an unreadable file is CMP0002 (malformed) or CMP0001 (not found) at its path.</summary>
    internal static IReadOnlyList<StateDictTensor> ReadFile(string path)
    {
        try
        {
            return StateDictFile.Read(path);
        }
        catch (Exception e) when (e is InvalidDataException or EndOfStreamException)
        {
            throw CompressException.Error(DiagnosticCodes.ModelMalformed, e.Message, path, inner: e);
        }
        catch (IOException e)
        {
            throw CompressException.Error(DiagnosticCodes.ModelNotFound, e.Message, path, inner: e);
        }
    }

    internal static Tensor ToTorch(StateDictTensor entry)
    {
        var result = empty(entry.Shape, ScalarType.Float32);
        entry.Data.CopyTo(result.bytes);
        return result;
    }

    internal static StateDictTensor Entry(string name, Tensor value)
    {
        using var contiguous = value.contiguous();
        var type = value.dtype switch
        {
            ScalarType.Float32 => StateDictElementType.Float32,
            ScalarType.Float16 => StateDictElementType.Float16,
            ScalarType.Int8 => StateDictElementType.Int8,
            ScalarType.Byte => StateDictElementType.Byte,
            _ => throw new NotSupportedException(value.dtype.ToString()),
        };
        return new StateDictTensor(name, type, value.shape, contiguous.bytes.ToArray());
    }
}

/// <summary>A write-only stream that only counts: the size a writer would produce, without holding a copy.</summary>
internal sealed class ByteCounter : Stream
{
    private long _length;

    public override bool CanRead => false;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => _length;

    public override long Position { get => _length; set => throw new NotSupportedException(); }

    public override void Write(byte[] buffer, int offset, int count) => _length += count;

    public override void Write(ReadOnlySpan<byte> buffer) => _length += buffer.Length;

    public override void WriteByte(byte value) => _length++;

    public override void Flush()
    {
    }

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();
}
