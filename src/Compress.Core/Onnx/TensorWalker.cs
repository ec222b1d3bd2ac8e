using Compress.Core.Onnx.Proto;

namespace Compress.Core.Onnx;

/// <summary>
/// Finds every <see cref="TensorProto"/> a model holds — initializers, sparse initializers, tensor
/// attributes (Constant values), and the same inside subgraphs, functions and training graphs — so
/// external-data checks and rewrites miss none of them.
/// </summary>
public static class TensorWalker
{
    public static IEnumerable<TensorProto> AllTensors(ModelProto model)
    {
        if (model.Graph is not null)
        {
            foreach (var t in InGraph(model.Graph))
            {
                yield return t;
            }
        }

        foreach (var function in model.Functions)
        {
            foreach (var t in InNodes(function.Node))
            {
                yield return t;
            }

            foreach (var attribute in function.AttributeProto)
            {
                foreach (var t in InAttribute(attribute))
                {
                    yield return t;
                }
            }
        }

        foreach (var training in model.TrainingInfo)
        {
            foreach (var graph in new[] { training.Initialization, training.Algorithm })
            {
                if (graph is null)
                {
                    continue;
                }

                foreach (var t in InGraph(graph))
                {
                    yield return t;
                }
            }
        }
    }

    public static IEnumerable<TensorProto> InGraph(GraphProto graph)
    {
        foreach (var t in graph.Initializer)
        {
            yield return t;
        }

        foreach (var sparse in graph.SparseInitializer)
        {
            foreach (var t in InSparse(sparse))
            {
                yield return t;
            }
        }

        foreach (var t in InNodes(graph.Node))
        {
            yield return t;
        }
    }

    private static IEnumerable<TensorProto> InNodes(IEnumerable<NodeProto> nodes)
    {
        foreach (var node in nodes)
        {
            foreach (var attribute in node.Attribute)
            {
                foreach (var t in InAttribute(attribute))
                {
                    yield return t;
                }
            }
        }
    }

    private static IEnumerable<TensorProto> InAttribute(AttributeProto attribute)
    {
        if (attribute.T is not null)
        {
            yield return attribute.T;
        }

        foreach (var t in attribute.Tensors)
        {
            yield return t;
        }

        if (attribute.SparseTensor is not null)
        {
            foreach (var t in InSparse(attribute.SparseTensor))
            {
                yield return t;
            }
        }

        foreach (var sparse in attribute.SparseTensors)
        {
            foreach (var t in InSparse(sparse))
            {
                yield return t;
            }
        }

        if (attribute.G is not null)
        {
            foreach (var t in InGraph(attribute.G))
            {
                yield return t;
            }
        }

        foreach (var graph in attribute.Graphs)
        {
            foreach (var t in InGraph(graph))
            {
                yield return t;
            }
        }
    }

    private static IEnumerable<TensorProto> InSparse(SparseTensorProto sparse)
    {
        if (sparse.Values is not null)
        {
            yield return sparse.Values;
        }

        if (sparse.Indices is not null)
        {
            yield return sparse.Indices;
        }
    }
}
