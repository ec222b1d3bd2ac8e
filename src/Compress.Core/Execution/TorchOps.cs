using Compress.Core.Onnx;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Execution;

/// <summary>
/// The ONNX operators the TorchSharp executor runs (default domain), each a small function of an <see cref="OpCall"/>
/// returning the node's outputs. Semantics follow the ONNX operator specs for opsets 7–21; attributes the
/// executor does not implement are refused by name, never ignored.
/// </summary>
public static partial class TorchOps
{
    private static readonly Dictionary<string, Func<OpCall, Tensor[]>> Table = new()
    {
        ["Identity"] = c => [c.X.alias()],
        ["Dropout"] = Dropout,
        ["Add"] = c => [c.X + c.Inputs[1]!],
        ["Sub"] = c => [c.X - c.Inputs[1]!],
        ["Mul"] = c => [c.X * c.Inputs[1]!],
        ["Div"] = c => [Divide(c.X, c.Inputs[1]!)],
        ["Relu"] = c => [nn.functional.relu(c.X)],
        ["Erf"] = c => [c.X.erf()],
        ["Sqrt"] = c => [c.X.sqrt()],
        ["Exp"] = c => [c.X.exp()],
        ["Log"] = c => [c.X.log()],
        ["Neg"] = c => [c.X.neg()],
        ["Abs"] = c => [c.X.abs()],
        ["Reciprocal"] = c => [c.X.reciprocal()],
        ["Pow"] = c => [c.X.pow(c.Inputs[1]!).to_type(c.X.dtype)],
        ["Where"] = c => [where(c.X, c.Inputs[1]!, c.Inputs[2]!)],
        ["Equal"] = c => [c.X.eq(c.Inputs[1]!)],
        ["Less"] = c => [c.X.lt(c.Inputs[1]!)],
        ["Greater"] = c => [c.X.gt(c.Inputs[1]!)],
        ["Not"] = c => [c.X.logical_not()],
        ["Max"] = c => [c.Inputs.Skip(1).Select(t => t!).Aggregate(c.X.alias(), (a, b) => a.maximum(b))],
        ["Min"] = c => [c.Inputs.Skip(1).Select(t => t!).Aggregate(c.X.alias(), (a, b) => a.minimum(b))],
        ["Sigmoid"] = c => [c.X.sigmoid()],
        ["Tanh"] = c => [c.X.tanh()],
        ["HardSigmoid"] = c => [(c.X * c.Node.Float("alpha", 0.2f) + c.Node.Float("beta", 0.5f)).clamp(0, 1)],
        ["Gelu"] = c => [nn.functional.gelu(c.X, c.Node.String("approximate", "none") == "tanh" ? TorchSharp.Modules.GELU.Approximate.tanh : TorchSharp.Modules.GELU.Approximate.none)],
        ["Clip"] = Clip,
        ["Softmax"] = Softmax,
        ["Gemm"] = Gemm,
        ["MatMul"] = c => [c.X.matmul(c.Inputs[1]!)],
        ["Conv"] = Conv,
        ["ConvTranspose"] = ConvTranspose,
        ["BatchNormalization"] = BatchNormalization,
        ["LayerNormalization"] = LayerNormalization,
        ["MaxPool"] = MaxPool,
        ["AveragePool"] = AveragePool,
        ["GlobalAveragePool"] = c => [c.X.mean(Enumerable.Range(2, (int)c.X.dim() - 2).Select(i => (long)i).ToArray(), keepdim: true)],
        ["ReduceMean"] = ReduceMean,
        ["Flatten"] = Flatten,
        ["Reshape"] = Reshape,
        ["Transpose"] = c => [c.X.permute(c.Node.Ints("perm") ?? Enumerable.Range(0, (int)c.X.dim()).Reverse().Select(i => (long)i).ToArray())],
        ["Concat"] = c => [cat(c.Inputs.Where(t => t is not null).Select(t => t!).ToList(), Axis(c.Node.Int("axis", 0), c.X))],
        ["Slice"] = Slice,
        ["Gather"] = Gather,
        ["Unsqueeze"] = Unsqueeze,
        ["Squeeze"] = Squeeze,
        ["Split"] = Split,
        ["Shape"] = Shape,
        ["ConstantOfShape"] = ConstantOfShape,
        ["Expand"] = Expand,
        ["Range"] = Range,
        ["Constant"] = Constant,
        ["Cast"] = Cast,
        ["QuantizeLinear"] = QuantizeLinear,
        ["DequantizeLinear"] = DequantizeLinear,
        ["FakeQuantize"] = FakeQuantize,
        ["GatherBlockQuantized"] = GatherBlockQuantized,
        ["Resize"] = Resize,
    };

    public static IReadOnlyCollection<string> Supported => Table.Keys;

    public static bool IsSupported(string opType) => Table.ContainsKey(opType);

    public static Tensor[] Run(OpCall call) => Table[call.Node.OpType](call);

    private static long Axis(long axis, Tensor like) => axis < 0 ? axis + like.dim() : axis;

    private static Tensor Divide(Tensor a, Tensor b) =>
        a.is_floating_point() ? a / b : a.div(b, RoundingMode.trunc);

    private static Tensor[] Clip(OpCall c)
    {
        if (c.Opset < 11)
        {
            return [c.X.clamp(c.Node.Float("min", float.MinValue), c.Node.Float("max", float.MaxValue))];
        }

        var x = c.X;
        if (c.Input(1) is { } min)
        {
            x = maximum(x, min);
        }

        if (c.Input(2) is { } max)
        {
            x = minimum(x, max);
        }

        return [x];
    }

    /// <summary>Inference: the identity, and an all-true mask if asked. Training mode (random) is refused.</summary>
    private static Tensor[] Dropout(OpCall c)
    {
        if (c.Input(2) is { } training && training.item<bool>() || c.Node.Int("is_test", 1) == 0)
        {
            throw c.Unsupported("training mode");
        }

        return [c.X.alias(), ones_like(c.X, ScalarType.Bool)];
    }

    private static Tensor[] Softmax(OpCall c)
    {
        var x = c.X;
        if (c.Opset >= 13)
        {
            return [x.softmax(Axis(c.Node.Int("axis", -1), x))];
        }

        // Before opset 13: the input is coerced to 2-D at 'axis' and softmax runs over the second dimension.
        var axis = Axis(c.Node.Int("axis", 1), x);
        var outer = x.shape.Take((int)axis).Aggregate(1L, (a, b) => a * b);
        return [x.reshape(outer, -1).softmax(1).reshape(x.shape)];
    }

    private static Tensor[] Gemm(OpCall c)
    {
        var a = c.Node.Int("transA", 0) == 1 ? c.X.t() : c.X;
        var b = c.Node.Int("transB", 0) == 1 ? c.Inputs[1]!.t() : c.Inputs[1]!;
        var y = a.mm(b) * c.Node.Float("alpha", 1f);
        return [c.Input(2) is { } bias ? y + bias * c.Node.Float("beta", 1f) : y];
    }

    private static Tensor[] Flatten(OpCall c)
    {
        var axis = Axis(c.Node.Int("axis", 1), c.X);
        var outer = c.X.shape.Take((int)axis).Aggregate(1L, (a, b) => a * b);
        return [c.X.reshape(outer, -1)];
    }

    private static Tensor[] Constant(OpCall c)
    {
        if (c.Node.TensorValue("value") is { } value)
        {
            return [Torch.OnnxTorchConversion.EmbeddedToTorch(value)];
        }

        if (c.Node.Attribute.FirstOrDefault(a => a.Name is "value_float" or "value_floats" or "value_int" or "value_ints") is { } attribute)
        {
            return [attribute.Name switch
            {
                "value_float" => torch.tensor(attribute.F),
                "value_floats" => torch.tensor(attribute.Floats.ToArray()),
                "value_int" => torch.tensor(attribute.I),
                _ => torch.tensor(attribute.Ints.ToArray()),
            }];
        }

        throw c.Unsupported("a Constant without 'value', 'value_float(s)' or 'value_int(s)'");
    }

    private static Tensor[] Cast(OpCall c)
    {
        var to = (Onnx.Proto.TensorProto.Types.DataType)c.Node.Int("to", 1);
        var type = Torch.OnnxTorchConversion.ScalarTypeOf(to) ?? throw c.Unsupported($"cast to {OnnxElementTypes.Name((int)to)}");
        return [c.X.to_type(type)];
    }
}
