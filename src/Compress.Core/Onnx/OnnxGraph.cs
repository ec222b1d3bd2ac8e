using Compress.Core.Diagnostics;
using Compress.Core.Onnx.Proto;

namespace Compress.Core.Onnx;

/// <summary>
/// The graph view the passes work on: who produces and who consumes each value, initializers by name,
/// topological order, and edits (insert, replace, remove nodes; add initializers). It edits the underlying
/// <see cref="GraphProto"/> directly, so whatever a pass does not touch is written back unchanged.
/// Indexes are rebuilt lazily after an edit.
/// </summary>
public sealed class OnnxGraph
{
    private readonly OnnxModel _model;
    private Dictionary<string, NodeProto>? _producers;
    private Dictionary<string, List<NodeProto>>? _consumers;
    private Dictionary<string, TensorProto>? _initializers;
    private HashSet<string>? _names;
    private (long, int, int, int, int) _namesAt;
    private long _version;

    internal OnnxGraph(OnnxModel model, GraphProto proto)
    {
        _model = model;
        Proto = proto;
    }

    public GraphProto Proto { get; }

    /// <summary>The model's opset version for <paramref name="domain"/> ("" for ai.onnx), or null when it imports none.</summary>
    public long? GetOpsetVersion(string domain) => _model.GetOpsetVersion(domain);

    public IReadOnlyList<NodeProto> Nodes => Proto.Node;

    public IEnumerable<string> InputNames => Proto.Input.Select(i => i.Name).Where(n => !Initializers.ContainsKey(n));

    public IReadOnlyDictionary<string, TensorProto> Initializers =>
        _initializers ??= Proto.Initializer.GroupBy(t => t.Name).ToDictionary(g => g.Key, g => g.Last());

    public TensorProto? GetInitializer(string name) => Initializers.GetValueOrDefault(name);

    /// <summary>The node that outputs <paramref name="value"/>, or null for graph inputs, initializers and unknown names.</summary>
    public NodeProto? GetProducer(string value)
    {
        EnsureIndexes();
        return _producers!.GetValueOrDefault(value);
    }

    /// <summary>Nodes reading <paramref name="value"/>, including nodes whose subgraphs read it from this scope.</summary>
    public IReadOnlyList<NodeProto> GetConsumers(string value)
    {
        EnsureIndexes();
        return _consumers!.TryGetValue(value, out var list) ? list : [];
    }

    /// <summary>Whether <paramref name="value"/> is one of the graph's outputs.</summary>
    public bool IsGraphOutput(string value) => Proto.Output.Any(o => o.Name == value);

    /// <summary>
    /// Nodes in an order where every producer precedes its consumers (Kahn's algorithm, ties broken by the
    /// stored order so the result is deterministic). A cycle is an error naming a node on it.
    /// </summary>
    public IReadOnlyList<NodeProto> TopologicalOrder()
    {
        EnsureIndexes();
        var nodes = Proto.Node;
        var index = new Dictionary<NodeProto, int>(ReferenceEqualityComparer.Instance);
        for (var i = 0; i < nodes.Count; i++)
        {
            index[nodes[i]] = i;
        }

        var pending = new int[nodes.Count];
        var dependents = new List<int>[nodes.Count];
        for (var i = 0; i < nodes.Count; i++)
        {
            dependents[i] = [];
        }

        for (var i = 0; i < nodes.Count; i++)
        {
            foreach (var input in ReadValues(nodes[i]).Distinct())
            {
                if (_producers!.TryGetValue(input, out var producer) && !ReferenceEquals(producer, nodes[i]))
                {
                    pending[i]++;
                    dependents[index[producer]].Add(i);
                }
            }
        }

        var ready = new PriorityQueue<int, int>();
        for (var i = 0; i < nodes.Count; i++)
        {
            if (pending[i] == 0)
            {
                ready.Enqueue(i, i);
            }
        }

        var order = new List<NodeProto>(nodes.Count);
        while (ready.TryDequeue(out var i, out _))
        {
            order.Add(nodes[i]);
            foreach (var d in dependents[i])
            {
                if (--pending[d] == 0)
                {
                    ready.Enqueue(d, d);
                }
            }
        }

        if (order.Count != nodes.Count)
        {
            var stuck = nodes.First(n => !order.Contains(n));
            throw CompressException.Error(DiagnosticCodes.GraphInvalid,
                $"the graph has a cycle through node '{Describe(stuck)}'", _model.Path);
        }

        return order;
    }

    /// <summary>Puts the stored node list in topological order (ONNX requires it; some producers do not comply).</summary>
    public void SortTopologically()
    {
        var order = TopologicalOrder();
        Proto.Node.Clear();
        Proto.Node.Add(order);
        Invalidate();
    }

    public void InsertBefore(NodeProto anchor, params NodeProto[] nodes) => Insert(IndexOf(anchor), nodes);

    public void InsertAfter(NodeProto anchor, params NodeProto[] nodes) => Insert(IndexOf(anchor) + 1, nodes);

    public void Append(params NodeProto[] nodes) => Insert(Proto.Node.Count, nodes);

    public void Prepend(params NodeProto[] nodes) => Insert(0, nodes);

    /// <summary>Replaces one node by zero or more nodes at the same position.</summary>
    public void Replace(NodeProto old, params NodeProto[] replacements)
    {
        var i = IndexOf(old);
        Proto.Node.RemoveAt(i);
        Insert(i, replacements);
    }

    public void Remove(NodeProto node)
    {
        Proto.Node.RemoveAt(IndexOf(node));
        Invalidate();
    }

    /// <summary>
    /// Points every reader of <paramref name="oldName"/> (nodes — only those <paramref name="only"/> accepts, when given —
    /// and graph outputs unless told not to) at <paramref name="newName"/>.
    /// </summary>
    public void RedirectConsumers(string oldName, string newName, NodeProto? except = null, bool graphOutputs = true, Func<NodeProto, bool>? only = null)
    {
        foreach (var node in Proto.Node)
        {
            if (ReferenceEquals(node, except) || (only is not null && !only(node)))
            {
                continue;
            }

            for (var i = 0; i < node.Input.Count; i++)
            {
                if (node.Input[i] == oldName)
                {
                    node.Input[i] = newName;
                }
            }
        }

        foreach (var output in Proto.Output.Where(o => graphOutputs && o.Name == oldName))
        {
            output.Name = newName;
        }

        Invalidate();
    }

    /// <summary>Adds an initializer; its name must be new to the graph.</summary>
    public TensorProto AddInitializer(TensorProto tensor)
    {
        if (string.IsNullOrEmpty(tensor.Name) || Initializers.ContainsKey(tensor.Name) || GetProducer(tensor.Name) is not null)
        {
            throw new ArgumentException($"initializer name '{tensor.Name}' is empty or already used in the graph", nameof(tensor));
        }

        var before = Counts();
        Proto.Initializer.Add(tensor);
        Track(before, [tensor.Name]);
        _initializers?.Add(tensor.Name, tensor); // nodes are unchanged: their indexes stay valid
        return tensor;
    }

    /// <summary>Removes an initializer that nothing reads any more.</summary>
    public void RemoveInitializer(string name)
    {
        var tensor = GetInitializer(name) ?? throw new ArgumentException($"no initializer '{name}'", nameof(name));
        Proto.Initializer.Remove(tensor);
        _model.ForgetExternal(tensor);
        var input = Proto.Input.FirstOrDefault(i => i.Name == name);
        if (input is not null)
        {
            Proto.Input.Remove(input);
        }

        Invalidate();
    }

    /// <summary>Removes an initializer when no node reads it and it is not a graph output (after a pass replaced its readers).</summary>
    public void RemoveInitializerIfUnused(string name)
    {
        if (GetInitializer(name) is not null && GetConsumers(name).Count == 0 && !IsGraphOutput(name))
        {
            RemoveInitializer(name);
        }
    }

    /// <summary>
    /// The nodes <paramref name="values"/> are computed from: their producers, those nodes' producers and so on, through
    /// the values subgraphs read from this scope; in stored order.
    /// </summary>
    public IReadOnlyList<NodeProto> Ancestors(IEnumerable<string> values)
    {
        EnsureIndexes();
        var needed = new HashSet<NodeProto>(ReferenceEqualityComparer.Instance);
        var pending = new Stack<string>(values);
        while (pending.TryPop(out var value))
        {
            if (_producers!.TryGetValue(value, out var producer) && needed.Add(producer))
            {
                foreach (var read in ReadValues(producer))
                {
                    pending.Push(read);
                }
            }
        }

        return Proto.Node.Where(needed.Contains).ToList();
    }

    /// <summary>The values <paramref name="nodes"/> read (their inputs, and what their subgraphs take from this scope).</summary>
    public static IReadOnlySet<string> Reads(IEnumerable<NodeProto> nodes) => nodes.SelectMany(ReadValues).ToHashSet(StringComparer.Ordinal);

    /// <summary>
    /// Removes every node none of whose outputs is read (a graph output counts as read), including those only removed
    /// nodes read, then the initializers that only removed nodes read: the chains a rewrite leaves behind. One pass in
    /// reverse topological order with read counts, so thousands of dead chains cost one index build, not one each.
    /// The nodes and initializers left keep their stored order. Returns the number of nodes removed.
    /// </summary>
    public int RemoveUnread()
    {
        var order = TopologicalOrder();
        var outputs = new HashSet<string>(Proto.Output.Select(o => o.Name), StringComparer.Ordinal);
        var reads = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var node in order)
        {
            foreach (var value in ReadValues(node).Distinct())
            {
                reads[value] = reads.GetValueOrDefault(value) + 1;
            }
        }

        var dead = new HashSet<NodeProto>(ReferenceEqualityComparer.Instance);
        var freed = new HashSet<string>(StringComparer.Ordinal); // values a removed node read
        for (var i = order.Count - 1; i >= 0; i--)
        {
            var node = order[i];
            if (node.Output.All(o => !outputs.Contains(o) && reads.GetValueOrDefault(o) == 0))
            {
                dead.Add(node);
                foreach (var value in ReadValues(node).Distinct())
                {
                    reads[value]--;
                    freed.Add(value);
                }
            }
        }

        if (dead.Count == 0)
        {
            return 0;
        }

        var kept = Proto.Node.Where(n => !dead.Contains(n)).ToList();
        Proto.Node.Clear();
        Proto.Node.Add(kept);
        var unread = Proto.Initializer.Where(t => freed.Contains(t.Name) && reads.GetValueOrDefault(t.Name) == 0 && !outputs.Contains(t.Name)).ToList();
        if (unread.Count > 0)
        {
            var names = new HashSet<string>(unread.Select(t => t.Name), StringComparer.Ordinal);
            var initializers = Proto.Initializer.Where(t => !names.Contains(t.Name)).ToList();
            Proto.Initializer.Clear();
            Proto.Initializer.Add(initializers);
            var inputs = Proto.Input.Where(i => !names.Contains(i.Name)).ToList();
            Proto.Input.Clear();
            Proto.Input.Add(inputs);
            unread.ForEach(_model.ForgetExternal);
        }

        Invalidate();
        return dead.Count;
    }

    /// <summary>
    /// A value name not used anywhere in the graph, derived from <paramref name="prefix"/>, and not handed out before.
    /// The set of used names is built once and kept up to date as this graph inserts nodes and initializers (rebuilt
    /// only when the graph was edited past it), so inserting thousands of Q/DQ nodes stays linear.
    /// </summary>
    public string UniqueName(string prefix)
    {
        var names = UsedNames();
        var candidate = prefix;
        for (var i = 1; names.Contains(candidate); i++)
        {
            candidate = $"{prefix}_{i}";
        }

        names.Add(candidate);
        return candidate;
    }

    private HashSet<string> UsedNames()
    {
        if (_names is null || _namesAt != Counts())
        {
            EnsureIndexes();
            _names = new HashSet<string>(_producers!.Keys.Concat(_consumers!.Keys).Concat(Initializers.Keys)
                .Concat(Proto.Input.Select(i => i.Name)).Concat(Proto.Output.Select(o => o.Name))
                .Concat(Proto.Node.Select(n => n.Name)), StringComparer.Ordinal);
            _namesAt = Counts();
        }

        return _names;
    }

    /// <summary>
    /// Where the graph stands: this graph's edit count, and the proto's sizes (which also move when a pass edits the
    /// proto directly, as the opset upgrader does).
    /// </summary>
    private (long, int, int, int, int) Counts() => (_version, Proto.Node.Count, Proto.Initializer.Count, Proto.Input.Count, Proto.Output.Count);

    /// <summary>
    /// Keeps the used-name set current after this graph added <paramref name="added"/>, when the set was current just
    /// before the edit (<paramref name="before"/>: the graph's standing then).
    /// </summary>
    private void Track((long, int, int, int, int) before, IEnumerable<string> added)
    {
        if (_names is not null && _namesAt == before)
        {
            _names.UnionWith(added.Where(n => n.Length > 0));
            _namesAt = Counts();
        }
    }

    /// <summary>Forgets every index and the used-name set, after the proto was edited directly.</summary>
    public void Refresh()
    {
        Invalidate();
        _names = null;
    }

    public static string Describe(NodeProto node) => string.IsNullOrEmpty(node.Name) ? $"{node.OpType}({string.Join(",", node.Output)})" : node.Name;

    private void Insert(int index, NodeProto[] nodes)
    {
        var before = Counts();
        for (var i = 0; i < nodes.Length; i++)
        {
            Proto.Node.Insert(index + i, nodes[i]);
        }

        Invalidate();
        Track(before, nodes.SelectMany(n => n.Output.Concat(n.Input).Append(n.Name)));
    }

    private int IndexOf(NodeProto node)
    {
        for (var i = 0; i < Proto.Node.Count; i++)
        {
            if (ReferenceEquals(Proto.Node[i], node))
            {
                return i;
            }
        }

        throw new ArgumentException($"node '{Describe(node)}' is not in this graph", nameof(node));
    }

    private void Invalidate()
    {
        _version++;
        _producers = null;
        _consumers = null;
        _initializers = null;
    }

    private void EnsureIndexes()
    {
        if (_producers is not null)
        {
            return;
        }

        var producers = new Dictionary<string, NodeProto>();
        var consumers = new Dictionary<string, List<NodeProto>>();
        foreach (var node in Proto.Node)
        {
            foreach (var output in node.Output.Where(o => o.Length > 0))
            {
                producers[output] = node;
            }

            foreach (var input in ReadValues(node).Distinct())
            {
                if (!consumers.TryGetValue(input, out var list))
                {
                    consumers[input] = list = [];
                }

                list.Add(node);
            }
        }

        _producers = producers;
        _consumers = consumers;
    }

    /// <summary>The values a node reads: its inputs, and names its subgraphs take from enclosing scopes.</summary>
    private static IEnumerable<string> ReadValues(NodeProto node)
    {
        foreach (var input in node.Input.Where(i => i.Length > 0))
        {
            yield return input;
        }

        foreach (var attribute in node.Attribute)
        {
            var graphs = attribute.G is null ? attribute.Graphs : attribute.Graphs.Append(attribute.G);
            foreach (var graph in graphs)
            {
                foreach (var name in OuterScopeReads(graph))
                {
                    yield return name;
                }
            }
        }
    }

    private static IEnumerable<string> OuterScopeReads(GraphProto graph)
    {
        var local = new HashSet<string>(graph.Input.Select(i => i.Name).Concat(graph.Initializer.Select(i => i.Name))
            .Concat(graph.SparseInitializer.Select(s => s.Values?.Name ?? "")).Concat(graph.Node.SelectMany(n => n.Output)));
        return graph.Node.SelectMany(ReadValues).Concat(graph.Output.Select(o => o.Name)).Where(n => !local.Contains(n)).Distinct();
    }
}
