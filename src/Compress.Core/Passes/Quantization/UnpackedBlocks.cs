using Compress.Core.Evaluation;
using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Torch;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Passes.Quantization;

/// <summary>
/// The <c>float</c> form of weight-only blocks (algorithms.md §11): the same codes as MatMulNBits — uint8, two 4-bit codes
/// per byte, blocks along the input axis — with float16 scales, turned back into the float32 weight by a chain of
/// standard ops that reads only initializers: <c>Mod</c> 16 and <c>BitShift</c> 4 (the two nibbles), <c>Concat</c>,
/// <c>Reshape</c> to blocks, <c>Cast</c> to float, <c>Sub</c> the zero point, <c>Mul</c> the scale, <c>Reshape</c> (and a
/// <c>Transpose</c> for a MatMul's [K, N]). ONNX Runtime folds the chain into one constant when it loads the model, so
/// the MatMul, Gemm or Gather that reads the weight is the float model's own node with its fusions and prepacked
/// kernels: float32 speed and float32 memory at run time, an int4 file. The chain's output takes the weight's name, so
/// every reader (a tied table's Gather and its projections alike) reads the same value. Opset 11 or newer (BitShift).
/// </summary>
public static class UnpackedBlocks
{
    /// <summary>The first opset with every op of the chain (BitShift: 11).</summary>
    public const int MinOpset = 11;

    /// <summary>
    /// Rows each node's input (<paramref name="values"/>) has per sample at batch 1 — a sequence's tokens for a
    /// transformer's MatMul, 1 for an MLP's — from one calibration sample run in ONNX Runtime: the product of every
    /// axis but the last. Shapes, not timings, so the choice they drive is the same on every run.
    /// </summary>
    public static IReadOnlyDictionary<string, long> RowsPerSample(CompressionContext context, IReadOnlyCollection<string> values) =>
        OrtModelRunner.Shapes(context.Model, context.Calibration, values)
            .ToDictionary(p => p.Key, p => p.Value.Length == 0 ? 1 : p.Value[..^1].Aggregate(1L, (a, b) => a * b), StringComparer.Ordinal);

    /// <summary>
    /// Whether a layer seeing <paramref name="rowsPerSample"/> rows per sample runs faster unpacked: MatMulNBits wins only
    /// on a single row (a matrix-vector product, bound by reading the weights); from two rows on it dequantizes the
    /// weight on every call and then multiplies as float does (algorithms.md §11, measured on a 128- and a 384-wide encoder).
    /// </summary>
    public static bool Faster(long rowsPerSample) => rowsPerSample > 1;

    /// <summary>
    /// Replaces the float initializer <paramref name="name"/> ([rows, cols], or [cols, rows] when
    /// <paramref name="transposed"/>) by the codes and the chain that rebuilds it. <paramref name="codes"/> are
    /// [rows, blocks, block] (blocks along cols, no padding), <paramref name="scales"/> and <paramref name="zeros"/>
    /// [rows, blocks, 1] as float (zeros null: symmetric, 2^(bits−1)). Scales are stored float16 when every one is a
    /// normal float16 (the caller rounds them so; see <see cref="HalfScales"/>), else float32. <paramref name="columns"/>
    /// below blocks × block: the last block's padding is cut by a Slice. Returns the codes' initializer name.
    /// </summary>
    public static string Store(OnnxGraph graph, string name, Tensor codes, Tensor scales, Tensor? zeros, int bits, long columns, bool transposed)
    {
        graph.RemoveInitializer(name);
        var nodes = new List<NodeProto>();
        var data = Chain(graph, name, name, nodes, codes, scales, zeros, bits, columns, transposed);
        graph.Prepend([.. nodes]);
        return data;
    }

    /// <summary>
    /// The <c>int8</c> form (algorithms.md §11): the float form's chain for the float initializer <paramref name="name"/>
    /// ([K, N] after it, whatever the source's layout), followed by <c>Div</c> one scale per output column
    /// (<paramref name="columnScales"/>, [N]), <c>Round</c>, <c>Clip</c> to ±127 and <c>Cast</c> to int8 — the weight of
    /// ONNX Runtime's <c>DynamicQuantizeMatMul</c>, folded at load like the float form, so the node multiplies in int8
    /// with B prepacked, as dynamic int8 does; the file keeps the int4 codes. Returns the codes' initializer name and
    /// the int8 weight's value name (a new one). As in <see cref="Store"/>, <paramref name="name"/> becomes the float
    /// chain's output in the source's layout (<paramref name="transposed"/>: [K, N]; else [N, K], transposed after it
    /// for the int8 weight), so any other reader of the weight reads the same values as before.
    /// </summary>
    public static (string Codes, string Weight) StoreInt8(OnnxGraph graph, string name, Tensor codes, Tensor scales, Tensor? zeros, int bits, long columns, bool transposed,
        string columnScales)
    {
        graph.RemoveInitializer(name);
        var nodes = new List<NodeProto>();
        var data = Chain(graph, name, name, nodes, codes, scales, zeros, bits, columns, transposed);
        var values = name;
        if (!transposed)
        {
            values = graph.UniqueName(name + "~kn");
            nodes.Add(new NodeProto { OpType = "Transpose", Input = { name }, Output = { values }, Attribute = { OnnxAttribute.Ints("perm", [1, 0]) } });
        }

        var steps = graph.UniqueName(name + "~steps");
        nodes.Add(new NodeProto { OpType = "Div", Input = { values, columnScales }, Output = { steps } });
        var rounded = graph.UniqueName(name + "~rounded");
        nodes.Add(new NodeProto { OpType = "Round", Input = { steps }, Output = { rounded } });
        var low = graph.AddInitializer(OnnxTensors.Scalar(graph.UniqueName("int8_low"), -127f)).Name;
        var high = graph.AddInitializer(OnnxTensors.Scalar(graph.UniqueName("int8_high"), 127f)).Name;
        var clipped = graph.UniqueName(name + "~clipped");
        nodes.Add(new NodeProto { OpType = "Clip", Input = { rounded, low, high }, Output = { clipped } });
        var weight = graph.UniqueName(name + "_int8");
        nodes.Add(new NodeProto { OpType = "Cast", Input = { clipped }, Output = { weight }, Attribute = { OnnxAttribute.Int("to", (long)TensorProto.Types.DataType.Int8) } });
        graph.Prepend([.. nodes]);
        return (data, weight);
    }

    /// <summary>
    /// One int8 scale per output column of the dequantized weight <paramref name="kn"/> ([K, N]): max |w| / 127, 1 for an
    /// all-zero column (its codes are 0 either way).
    /// </summary>
    public static Tensor ColumnScales(Tensor kn)
    {
        var max = kn.abs().amax(0);
        return where(max.gt(0), max / 127f, ones_like(max));
    }

    /// <summary>What the <c>int8</c> form's chain computes from the dequantized <paramref name="kn"/> and its column scales: the int8 codes, as float.</summary>
    public static Tensor Int8Codes(Tensor kn, Tensor columnScales) => (kn / columnScales).round().clamp(-127, 127);

    private static string Chain(OnnxGraph graph, string name, string output, List<NodeProto> nodes, Tensor codes, Tensor scales, Tensor? zeros, int bits, long columns, bool transposed)
    {
        using var scope = NewDisposeScope();
        long rows = codes.shape[0], blocks = codes.shape[1], block = codes.shape[2], cols = blocks * block;
        var half = HalfScales(scales);
        string Node(string op, string suffix, params string[] inputs)
        {
            var output = graph.UniqueName($"{name}~{suffix}");
            nodes.Add(new NodeProto { OpType = op, Input = { inputs }, Output = { output } });
            return output;
        }

        string unpacked;
        string data;
        if (bits == 4)
        {
            // [rows, cols/2, 1] bytes, low nibble first: Mod 16 gives the even codes, BitShift 4 the odd ones.
            var packed = IntegerGrid.PackNibbles(codes.to_type(ScalarType.Byte).reshape(rows, cols)).reshape(rows, cols / 2, 1);
            data = graph.AddInitializer(packed.contiguous().ToOnnx(graph.UniqueName(name + "_int4"))).Name;
            var sixteen = graph.AddInitializer(OnnxTensors.Scalar(graph.UniqueName("nibble_modulus"), (byte)16)).Name;
            var four = graph.AddInitializer(OnnxTensors.Scalar(graph.UniqueName("nibble_shift"), (byte)4)).Name;
            var low = Node("Mod", "low", data, sixteen);
            var high = Node("BitShift", "high", data, four);
            nodes[^1].Attribute.Add(OnnxAttribute.String("direction", "RIGHT"));
            var pairs = Node("Concat", "pairs", low, high);
            nodes[^1].Attribute.Add(OnnxAttribute.Int("axis", 2));
            unpacked = Node("Reshape", "blocks", pairs, Shape(graph, [rows, blocks, block]));
        }
        else
        {
            data = graph.AddInitializer(codes.to_type(ScalarType.Byte).contiguous().ToOnnx(graph.UniqueName(name + "_int8"))).Name;
            unpacked = data;
        }

        var values = Node("Cast", "float", unpacked);
        nodes[^1].Attribute.Add(OnnxAttribute.Int("to", (long)TensorProto.Types.DataType.Float));
        string zero;
        if (zeros is null)
        {
            zero = graph.AddInitializer(OnnxTensors.Scalar(graph.UniqueName($"int{bits}_zero_point"), (float)(1 << (bits - 1)))).Name;
        }
        else
        {
            var stored = graph.AddInitializer(zeros.reshape(rows, blocks, 1).to_type(ScalarType.Byte).contiguous().ToOnnx(graph.UniqueName(name + "_zero_points"))).Name;
            zero = Node("Cast", "zero", stored);
            nodes[^1].Attribute.Add(OnnxAttribute.Int("to", (long)TensorProto.Types.DataType.Float));
        }

        var centred = Node("Sub", "centred", values, zero);
        var scaleValues = scales.reshape(rows, blocks, 1);
        var scale = graph.AddInitializer((half ? scaleValues.to_type(ScalarType.Float16) : scaleValues).contiguous().ToOnnx(graph.UniqueName(name + "_scales"))).Name;
        if (half)
        {
            scale = Node("Cast", "scale", scale);
            nodes[^1].Attribute.Add(OnnxAttribute.Int("to", (long)TensorProto.Types.DataType.Float));
        }

        var scaled = Node("Mul", "scaled", centred, scale);
        var padded = columns < cols;
        var matrix = transposed || padded ? Node("Reshape", "matrix", scaled, Shape(graph, [rows, cols])) : null;
        if (padded)
        {
            matrix = Node("Slice", "cut", matrix!, Shape(graph, [0]), Shape(graph, [columns]), Shape(graph, [1]));
        }

        if (matrix is null)
        {
            nodes.Add(new NodeProto { OpType = "Reshape", Input = { scaled, Shape(graph, [rows, cols]) }, Output = { output } });
        }
        else if (transposed)
        {
            nodes.Add(new NodeProto { OpType = "Transpose", Input = { matrix }, Output = { output }, Attribute = { OnnxAttribute.Ints("perm", [1, 0]) } });
        }
        else
        {
            nodes[^1].Output[0] = output;
        }

        return data;
    }

    /// <summary>
    /// Whether these scales are stored float16: every one a normal float16 (2⁻¹⁴ to 65504) equal to its float16
    /// rounding. Callers round them first with <see cref="RoundToHalf"/>, which keeps out-of-range ones float32.
    /// </summary>
    public static bool HalfScales(Tensor scales)
    {
        using var scope = NewDisposeScope();
        return InHalfRange(scales).all().item<bool>() && scales.to_type(ScalarType.Float16).to_type(ScalarType.Float32).eq(scales).all().item<bool>();
    }

    /// <summary>Scales rounded to float16 when all are in its normal range (a relative change ≤ 2⁻¹¹), else as they are.</summary>
    public static Tensor RoundToHalf(Tensor scales) =>
        InHalfRange(scales).all().item<bool>() ? scales.to_type(ScalarType.Float16).to_type(ScalarType.Float32) : scales;

    private static Tensor InHalfRange(Tensor scales) => scales.ge(6.103515625e-05).logical_and(scales.le(65504));

    /// <summary>An int64 vector initializer (a shape, or a Slice's starts/ends/axes); equal ones are stored once by the tidy.</summary>
    private static string Shape(OnnxGraph graph, long[] dims) =>
        graph.AddInitializer(OnnxTensors.Create(graph.UniqueName("shape_" + string.Join("x", dims)), dims, dims.Length)).Name;
}
