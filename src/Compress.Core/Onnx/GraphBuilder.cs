using Compress.Core.Onnx.Proto;
using Google.Protobuf;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Core.Onnx;

/// <summary>
/// Builds small ONNX models in code, for tests, samples and synthetic benchmarks.
/// Dimensions are <see cref="long"/> (fixed) or <see cref="string"/> (symbolic).
/// </summary>
public sealed class GraphBuilder
{
    private readonly GraphProto _graph;
    private readonly Dictionary<string, long> _opsets = new() { [""] = 17 };

    public GraphBuilder(string name)
    {
        _graph = new GraphProto { Name = name };
    }

    public GraphBuilder Opset(string domain, long version)
    {
        _opsets[OnnxModel.NormalizeDomain(domain)] = version;
        return this;
    }

    public GraphBuilder Input(string name, DataType type, params object[] dims)
    {
        _graph.Input.Add(ValueInfo(name, type, dims));
        return this;
    }

    public GraphBuilder Output(string name, DataType type, params object[] dims)
    {
        _graph.Output.Add(ValueInfo(name, type, dims));
        return this;
    }

    public GraphBuilder Initializer(TensorProto tensor)
    {
        _graph.Initializer.Add(tensor);
        return this;
    }

    public GraphBuilder Initializer<T>(string name, T[] values, params long[] dims) where T : unmanaged =>
        Initializer(OnnxTensors.Create(name, values, dims));

    public GraphBuilder Node(string opType, string[] inputs, string[] outputs, string? name = null, string domain = "", params AttributeProto[] attributes)
    {
        var node = new NodeProto { OpType = opType, Name = name ?? $"{opType}_{_graph.Node.Count}" };
        if (domain.Length > 0)
        {
            node.Domain = domain;
        }

        node.Input.Add(inputs);
        node.Output.Add(outputs);
        node.Attribute.Add(attributes);
        _graph.Node.Add(node);
        return this;
    }

    public OnnxModel Build(long irVersion = 8, string producer = "Compress.Build")
    {
        var model = new ModelProto { IrVersion = irVersion, ProducerName = producer, Graph = _graph };
        foreach (var (domain, version) in _opsets.OrderBy(o => o.Key, StringComparer.Ordinal))
        {
            model.OpsetImport.Add(new OperatorSetIdProto { Domain = domain, Version = version });
        }

        return new OnnxModel(model);
    }

    public static ValueInfoProto ValueInfo(string name, DataType type, params object[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (var dim in dims)
        {
            shape.Dim.Add(dim switch
            {
                string symbol => new TensorShapeProto.Types.Dimension { DimParam = symbol },
                _ => new TensorShapeProto.Types.Dimension { DimValue = Convert.ToInt64(dim, System.Globalization.CultureInfo.InvariantCulture) },
            });
        }

        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } },
        };
    }
}

/// <summary>Attribute constructors, named as ONNX types them.</summary>
public static class OnnxAttribute
{
    public static AttributeProto Int(string name, long value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    public static AttributeProto Float(string name, float value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value };

    public static AttributeProto String(string name, string value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.String, S = ByteString.CopyFromUtf8(value) };

    public static AttributeProto Ints(string name, params long[] values)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.Add(values);
        return a;
    }

    public static AttributeProto Floats(string name, params float[] values)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Floats };
        a.Floats.Add(values);
        return a;
    }

    public static AttributeProto Tensor(string name, TensorProto value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Tensor, T = value };
}
