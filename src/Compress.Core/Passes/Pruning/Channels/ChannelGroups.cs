using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Passes.SecondOrder;

namespace Compress.Core.Passes.Pruning.Channels;

/// <summary>
/// Finds the dependency groups of an ONNX graph (algorithms.md §14), as DepGraph does on autograd graphs: from each
/// producer (Conv or ConvTranspose with group 1, Gemm, MatMul with a constant weight) the channels are followed forward to every
/// reader and backward to every writer. Pass-through ops (activations, pooling, BatchNormalization, element-wise ops
/// with broadcast constants, depthwise Conv, Resize by constant scales) tie their input and output channels; all non-constant inputs of an
/// element-wise op (a residual Add) share one channel set; a Concat along the channel axis shifts the channels by the
/// inputs before it; a Flatten or 2-D Reshape into a Gemm/MatMul maps channel c to features [c·HW, (c+1)·HW). The q/k/v
/// projections of multi-head attention form one group of heads instead (<see cref="AttentionHeads"/>), and so does
/// ONNX Runtime's fused com.microsoft.Attention (<see cref="ContribAttentionHeads"/>). Anything else
/// that reads or writes the channels — a graph input or output, a Transpose, a Softmax — leaves the group whole, with
/// the reason.
/// </summary>
public static class ChannelGroups
{
    /// <summary>Why a Gemm reader with alpha or beta other than 1 leaves its group whole (a reader here or an attention output projection).</summary>
    internal static string ScaledGemmRefusal(NodeProto gemm) =>
        $"'{OnnxGraph.Describe(gemm)}' is a Gemm with alpha or beta other than 1, which the least-squares refit of its weight does not model";

    /// <summary>Ops that map each channel to the same channel, with only their first input carrying data.</summary>
    private static readonly HashSet<string> Unary =
    [
        "Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Elu", "Selu", "Celu", "Softplus", "Softsign", "Gelu",
        "Erf", "Identity", "Dropout", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "Neg", "Abs",
        "Exp", "Sqrt", "Clip", "Mish", "ThresholdedRelu", "Round", "Floor", "Ceil", "Reciprocal",
    ];

    /// <summary>Element-wise ops whose inputs broadcast together: constants are sliced with the channels, other inputs join the group.</summary>
    private static readonly HashSet<string> Elementwise = ["Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean", "PRelu", "Pow"];

    /// <summary>Every group of the graph, in the order of their first producer.</summary>
    public static IReadOnlyList<ChannelGroup> Find(OnnxGraph graph)
    {
        var groups = new List<ChannelGroup>();
        var seen = new HashSet<NodeProto>(ReferenceEqualityComparer.Instance);
        var order = graph.TopologicalOrder();
        var heads = new Dictionary<NodeProto, ChannelGroup>(ReferenceEqualityComparer.Instance);
        foreach (var attention in AttentionHeads.Find(graph, order).Concat(ContribAttentionHeads.Find(graph, order)))
        {
            attention.Producers.ForEach(p => heads.TryAdd(p, attention));
        }

        foreach (var node in order)
        {
            if (seen.Contains(node))
            {
                continue;
            }

            // A q/k/v projection of multi-head attention (or a fused com.microsoft.Attention): its group is the block's heads.
            ChannelGroup group;
            if (heads.TryGetValue(node, out var block))
            {
                group = block;
            }
            else if (Produced(graph, node) is { } produced)
            {
                group = new Analysis(graph, node, produced).Run();
            }
            else
            {
                continue;
            }

            seen.UnionWith(group.Producers);
            groups.Add(group);
        }

        return groups;
    }

    /// <summary>A node's output channels when it is a producer: (weight, its channel axis, count, rank of the output or null).</summary>
    internal static (string Weight, int Axis, long Channels, int? Rank)? Produced(OnnxGraph graph, NodeProto node)
    {
        if (!string.IsNullOrEmpty(node.Domain) || node.Input.Count < 2 || graph.GetInitializer(node.Input[1]) is not { } w
            || w.DataType != (int)TensorProto.Types.DataType.Float || graph.GetInitializer(node.Input[0]) is not null)
        {
            return null;
        }

        return node.OpType switch
        {
            "Conv" when node.Int("group", 1) == 1 && w.Dims.Count >= 3 => (w.Name, 0, w.Dims[0], w.Dims.Count),
            // ConvTranspose's weight is [C_in, C_out/group, k…]; its output_shape names spatial sizes only, never the channels.
            "ConvTranspose" when node.Int("group", 1) == 1 && w.Dims.Count >= 3 => (w.Name, 1, w.Dims[1], w.Dims.Count),
            "Gemm" when node.Int("transA", 0) == 0 && w.Dims.Count == 2 => (w.Name, node.Int("transB", 0) == 1 ? 0 : 1, node.Int("transB", 0) == 1 ? w.Dims[0] : w.Dims[1], 2),
            "MatMul" when w.Dims.Count == 2 => (w.Name, 1, w.Dims[1], null),
            _ => null,
        };
    }

    private static bool IsDepthwise(OnnxGraph graph, NodeProto node) =>
        node.OpType == "Conv" && node.Int("group", 1) > 1 && graph.GetInitializer(node.Input[1]) is { } w
        && w.Dims.Count >= 3 && w.Dims[1] == 1 && w.Dims[0] == node.Int("group", 1);

    /// <summary>How many channels a value has (along its channel axis), from the weights that make it; null when unknown.</summary>
    public static long? ChannelCount(OnnxGraph graph, string value, int depth = 0)
    {
        var node = graph.GetProducer(value);
        if (node is null || depth > 256)
        {
            return null;
        }

        if (Produced(graph, node) is { } produced)
        {
            return produced.Channels;
        }

        if (IsDepthwise(graph, node))
        {
            return graph.GetInitializer(node.Input[1])!.Dims[0];
        }

        if (node.OpType == "Concat")
        {
            long sum = 0;
            foreach (var input in node.Input)
            {
                if (ChannelCount(graph, input, depth + 1) is not { } count)
                {
                    return null;
                }

                sum += count;
            }

            return sum;
        }

        if (node.OpType is "Resize" or "Upsample")
        {
            return ResizeChannels.Moves(graph, node, null) is null ? ChannelCount(graph, node.Input[0], depth + 1) : null;
        }

        if (Unary.Contains(node.OpType) || node.OpType == "BatchNormalization" || Elementwise.Contains(node.OpType))
        {
            return node.Input.Where(i => i.Length > 0 && graph.GetInitializer(i) is null).Select(i => ChannelCount(graph, i, depth + 1)).FirstOrDefault(c => c is not null);
        }

        return null;
    }

    /// <summary>Where the group's channels sit in a value: their offset along the channel axis, and the value's rank when known.</summary>
    private readonly record struct Member(long Offset, int? Rank);

    private sealed class Analysis
    {
        private readonly OnnxGraph _graph;
        private readonly ChannelGroup _group;
        private readonly Dictionary<string, Member> _members = new(StringComparer.Ordinal);
        private readonly Queue<string> _queue = new();
        private readonly HashSet<NodeProto> _forward = new(ReferenceEqualityComparer.Instance);
        private readonly HashSet<NodeProto> _backward = new(ReferenceEqualityComparer.Instance);

        public Analysis(OnnxGraph graph, NodeProto seed, (string Weight, int Axis, long Channels, int? Rank) produced)
        {
            _graph = graph;
            _group = new ChannelGroup(seed, produced.Channels);
            AddProducer(seed, produced);
            Join(seed.Output[0], new Member(0, produced.Rank));
        }

        public ChannelGroup Run()
        {
            while (_queue.Count > 0 && _group.Refusal is null)
            {
                var value = _queue.Dequeue();
                var member = _members[value];
                if (_graph.IsGraphOutput(value))
                {
                    Refuse($"its channels reach the graph output '{value}'");
                    break;
                }

                Backward(value, member);
                foreach (var consumer in _graph.GetConsumers(value).ToList())
                {
                    if (_group.Refusal is null)
                    {
                        Forward(consumer, value, member);
                    }
                }
            }

            if (_group.Refusal is null)
            {
                CheckInitializers();
            }

            return _group;
        }

        private void Refuse(string why) => _group.Refusal ??= why;

        private void Join(string value, Member member)
        {
            if (_members.TryGetValue(value, out var known))
            {
                if (known.Offset != member.Offset)
                {
                    Refuse($"'{value}' holds its channels at two offsets");
                }

                return;
            }

            _members[value] = member;
            _group.Values.Add(value);
            _queue.Enqueue(value);
        }

        private void AddProducer(NodeProto node, (string Weight, int Axis, long Channels, int? Rank) produced)
        {
            if (produced.Channels != _group.Channels)
            {
                Refuse($"'{OnnxGraph.Describe(node)}' writes {produced.Channels} channels where the group has {_group.Channels}");
                return;
            }

            _backward.Add(node);
            _group.Producers.Add(node);
            _group.Slices.Add(new ChannelSlice(produced.Weight, node, produced.Axis, 0, 1, SliceRole.Producer));
            var biasIndex = node.OpType == "MatMul" ? -1 : 2;
            if (biasIndex > 0 && node.Input.Count > biasIndex && node.Input[biasIndex].Length > 0)
            {
                if (_graph.GetInitializer(node.Input[biasIndex]) is not { } bias)
                {
                    Refuse($"the bias of '{OnnxGraph.Describe(node)}' is not a constant");
                    return;
                }

                AddConstant(node, bias, -1, 0, bias.Dims.Count);
            }
        }

        /// <summary>
        /// A constant that broadcasts against a member (channel axis <paramref name="fromEnd"/> from the end): sliced
        /// where it has one value per channel, left alone where it has one for all.
        /// </summary>
        private void AddConstant(NodeProto node, TensorProto constant, int fromEnd, long offset, int? memberRank)
        {
            var axis = constant.Dims.Count + fromEnd;
            if (axis < 0 || constant.Dims[axis] == 1)
            {
                return; // one value for every channel
            }

            if (memberRank is { } rank && constant.Dims.Count > rank)
            {
                Refuse($"the constant '{constant.Name}' of '{OnnxGraph.Describe(node)}' has more axes than its input");
                return;
            }

            _group.Slices.Add(new ChannelSlice(constant.Name, node, axis, offset, 1, SliceRole.Parameter));
        }

        private static int FromEnd(Member member, NodeProto reader) => member.Rank is { } rank ? 1 - rank : -1;

        private void Backward(string value, Member member)
        {
            var node = _graph.GetProducer(value);
            if (node is null)
            {
                Refuse($"its channels come from the graph input '{value}'");
                return;
            }

            if ((node.OpType == "Concat" && _forward.Contains(node)) || !_backward.Add(node))
            {
                return; // a Concat the group went through forward: its other inputs are other groups
            }

            if (Produced(_graph, node) is { } produced)
            {
                if (member.Offset != 0)
                {
                    Refuse($"'{OnnxGraph.Describe(node)}' writes channels the group holds at an offset");
                    return;
                }

                AddProducer(node, produced);
                return;
            }

            Through(node, member, value);
        }

        private void Forward(NodeProto node, string value, Member member)
        {
            var name = OnnxGraph.Describe(node);
            if (!string.IsNullOrEmpty(node.Domain))
            {
                Refuse($"'{name}' ({node.Domain}.{node.OpType}) reads its channels");
                return;
            }

            switch (node.OpType)
            {
                case "Conv" when node.Input[0] == value && node.Int("group", 1) == 1 && _graph.GetInitializer(node.Input[1]) is { } w:
                    if (member.Rank is { } rank && rank != w.Dims.Count)
                    {
                        Refuse($"'{name}' reads the channels with a weight of another rank");
                        return;
                    }

                    _forward.Add(node);
                    _group.Slices.Add(new ChannelSlice(w.Name, node, 1, member.Offset, 1, SliceRole.Consumer));
                    return;
                case "ConvTranspose" when node.Input[0] == value && _graph.GetInitializer(node.Input[1]) is { } tw:
                    ConvTranspose(node, tw, member);
                    return;
                case "Gemm" or "MatMul" when node.Input[0] == value:
                    if (member.Rank is { } r && r != 2 && node.OpType == "Gemm")
                    {
                        Refuse($"'{name}' reads a rank-{r} value");
                        return;
                    }

                    Reader(node, member.Offset, 1);
                    return;
                case "Concat":
                    Concat(node, value, member);
                    return;
                case "Flatten":
                case "Reshape":
                    Flatten(node, value, member);
                    return;
            }

            if (!_forward.Add(node))
            {
                return;
            }

            Through(node, member, value);
            foreach (var output in node.Output.Skip(1).Where(o => o.Length > 0))
            {
                if (_graph.GetConsumers(output).Count > 0 || _graph.IsGraphOutput(output))
                {
                    Refuse($"the output '{output}' of '{name}' is read");
                }
            }
        }

        /// <summary>A node that keeps channel c at channel c: its data inputs and its output join the group.</summary>
        private void Through(NodeProto node, Member member, string from)
        {
            var name = OnnxGraph.Describe(node);
            if (Unary.Contains(node.OpType))
            {
                if (node.Input[0] != from && node.Output[0] != from)
                {
                    Refuse($"'{name}' reads its channels as a parameter");
                    return;
                }

                _forward.Add(node);
                _backward.Add(node);
                Join(node.Input[0], member);
                Join(node.Output[0], member);
                return;
            }

            if (node.OpType == "BatchNormalization")
            {
                if (node.Input[0] != from && node.Output[0] != from)
                {
                    Refuse($"'{name}' reads its channels as a parameter");
                    return;
                }

                if (node.Output.Count > 1 && node.Output.Skip(1).Any(o => o.Length > 0))
                {
                    Refuse($"'{name}' is in training mode");
                    return;
                }

                foreach (var parameter in node.Input.Skip(1))
                {
                    if (_graph.GetInitializer(parameter) is not { } p)
                    {
                        Refuse($"a parameter of '{name}' is not a constant");
                        return;
                    }

                    _group.Slices.Add(new ChannelSlice(p.Name, node, 0, member.Offset, 1, SliceRole.Parameter));
                }

                _forward.Add(node);
                _backward.Add(node);
                Join(node.Input[0], member);
                Join(node.Output[0], member);
                return;
            }

            if (Elementwise.Contains(node.OpType))
            {
                var total = ChannelCount(_graph, from);
                foreach (var input in node.Input.Where(i => i.Length > 0))
                {
                    if (_graph.GetInitializer(input) is { } constant)
                    {
                        AddConstant(node, constant, FromEnd(member, node), member.Offset, member.Rank);
                    }
                    else if (total is null || ChannelCount(_graph, input) != total)
                    {
                        Refuse($"'{name}' combines its channels with '{input}', whose channels are not known to match");
                        return;
                    }
                    else
                    {
                        Join(input, member);
                    }
                }

                _forward.Add(node);
                _backward.Add(node);
                Join(node.Output[0], member);
                return;
            }

            if (IsDepthwise(_graph, node) && (node.Input[0] == from || node.Output[0] == from))
            {
                // A depthwise Conv keeps channel c at c: its filter and bias go with the channel, and 'group' with the count.
                _group.Slices.Add(new ChannelSlice(node.Input[1], node, 0, member.Offset, 1, SliceRole.Parameter));
                if (node.Input.Count > 2 && node.Input[2].Length > 0)
                {
                    _group.Slices.Add(new ChannelSlice(node.Input[2], node, 0, member.Offset, 1, SliceRole.Parameter));
                }

                _group.AttributeFixes.Add(new AttributeFix(node, "group", [1]));
                _forward.Add(node);
                _backward.Add(node);
                Join(node.Input[0], member);
                Join(node.Output[0], member);
                return;
            }

            if (node.OpType is "Resize" or "Upsample" && (node.Input[0] == from || node.Output[0] == from))
            {
                if (member.Rank is null)
                {
                    Refuse($"'{name}' ({node.OpType}) resizes a value whose channel axis is not known");
                    return;
                }

                if (ResizeChannels.Moves(_graph, node, member.Rank) is { } why)
                {
                    Refuse($"'{name}' ({node.OpType}) {why}");
                    return;
                }

                _forward.Add(node);
                _backward.Add(node);
                Join(node.Input[0], member);
                Join(node.Output[0], member);
                return;
            }

            Refuse(node.Output.Contains(from) ? $"its channels come from '{name}' ({node.OpType})" : $"'{name}' ({node.OpType}) reads its channels");
        }

        /// <summary>
        /// A ConvTranspose reading the channels: its weight [C_in, C_out, k…] loses rows on axis 0, and it is scored and
        /// refitted as the Conv it equals (<see cref="ConvTransposeGeometry"/>); a grouped one, or one whose
        /// pads come from output_shape or auto_pad, leaves the group whole.
        /// </summary>
        private void ConvTranspose(NodeProto node, TensorProto w, Member member)
        {
            var name = OnnxGraph.Describe(node);
            if (ConvTransposeGeometry.Unsupported(node, w) is { } why)
            {
                Refuse($"'{name}' {why}");
                return;
            }

            if (member.Rank is { } rank && rank != w.Dims.Count)
            {
                Refuse($"'{name}' reads the channels with a weight of another rank");
                return;
            }

            _forward.Add(node);
            _group.Slices.Add(new ChannelSlice(w.Name, node, 0, member.Offset, 1, SliceRole.Consumer));
        }

        /// <summary>A Gemm or MatMul reading the channels as its input features (stride: features per channel).</summary>
        private void Reader(NodeProto node, long offset, long stride)
        {
            var name = OnnxGraph.Describe(node);
            if (node.Input.Count < 2 || _graph.GetInitializer(node.Input[1]) is not { } w || w.Dims.Count != 2
                || (node.OpType == "Gemm" && node.Int("transA", 0) != 0))
            {
                Refuse($"'{name}' reads its channels without a constant weight it can slice");
                return;
            }

            if (!WeightSelection.IsPlainMatMul(node))
            {
                // The consumers' refit fits W'z + b' to Wz + C; a Gemm computing αWz + βC would be off by (β − α)(b' − C).
                Refuse(ScaledGemmRefusal(node));
                return;
            }

            _forward.Add(node);
            var axis = node.OpType == "Gemm" && node.Int("transB", 0) == 1 ? 1 : 0;
            _group.Slices.Add(new ChannelSlice(w.Name, node, axis, offset * stride, stride, SliceRole.Consumer));
        }

        private void Concat(NodeProto node, string value, Member member)
        {
            var name = OnnxGraph.Describe(node);
            var axis = node.Int("axis", 0);
            var channelAxis = member.Rank is { } rank ? (axis < 0 ? axis + rank : axis) == rank + FromEnd(member, node) : axis == -1;
            if (!channelAxis)
            {
                Refuse($"'{name}' concatenates its channels along another axis");
                return;
            }

            if (node.Input.Count(i => i == value) != 1)
            {
                Refuse($"'{name}' concatenates its channels with themselves");
                return;
            }

            long before = 0;
            foreach (var input in node.Input.TakeWhile(i => i != value))
            {
                if (ChannelCount(_graph, input) is not { } count)
                {
                    Refuse($"'{name}' concatenates it after '{input}', whose channel count is not known");
                    return;
                }

                before += count;
            }

            _forward.Add(node);
            Join(node.Output[0], member with { Offset = member.Offset + before });
        }

        /// <summary>Flatten (axis 1) or a Reshape to [N, features] into Gemm/MatMul readers: channel c is features [c·HW, (c+1)·HW).</summary>
        private void Flatten(NodeProto node, string value, Member member)
        {
            var name = OnnxGraph.Describe(node);
            if (node.Input[0] != value || member.Rank is not { } rank || FromEnd(member, node) != 1 - rank)
            {
                Refuse($"'{name}' reshapes its channels in a way the engine does not follow");
                return;
            }

            string? shapeName = null;
            var shapeIndex = 0;
            if (node.OpType == "Flatten")
            {
                if (node.Int("axis", 1) != 1)
                {
                    Refuse($"'{name}' flattens from axis {node.Int("axis", 1)}, not 1");
                    return;
                }
            }
            else
            {
                var shape = node.Input.Count > 1 ? _graph.GetInitializer(node.Input[1]) : null; // before opset 5 an attribute
                if (shape is null || shape.Dims.Count != 1 || shape.Dims[0] != 2)
                {
                    Refuse($"'{name}' reshapes to a shape that is not a constant [N, features]");
                    return;
                }

                shapeName = shape.Name;
                shapeIndex = 1;
            }

            var readers = _graph.GetConsumers(node.Output[0]);
            if (readers.Count == 0 || _graph.IsGraphOutput(node.Output[0]) || readers.Any(r => r.OpType is not ("Gemm" or "MatMul") || r.Input[0] != node.Output[0]))
            {
                Refuse($"the output of '{name}' is read by something other than Gemm/MatMul");
                return;
            }

            var total = ChannelCount(_graph, value);
            var w = _graph.GetInitializer(readers[0].Input.ElementAtOrDefault(1) ?? "");
            if (total is null || w is null || w.Dims.Count != 2)
            {
                Refuse($"the features per channel after '{name}' are not known");
                return;
            }

            var features = readers[0].OpType == "Gemm" && readers[0].Int("transB", 0) == 1 ? w.Dims[1] : w.Dims[0];
            if (features % total.Value != 0)
            {
                Refuse($"'{name}' gives {features} features for {total} channels");
                return;
            }

            var perChannel = features / total.Value;
            _forward.Add(node);
            _group.Values.Add(node.Output[0]);
            if (shapeName is not null)
            {
                _group.Fixes.Add(new ChannelFix(node, shapeName, shapeIndex, perChannel));
            }

            foreach (var reader in readers)
            {
                Reader(reader, member.Offset, perChannel);
            }
        }

        /// <summary>Every sliced initializer must belong to its node alone: a shared weight would be cut for its other readers too.</summary>
        private void CheckInitializers()
        {
            if (_group.SliceConflict(_graph) is { } why)
            {
                Refuse(why);
                return;
            }

            foreach (var fix in _group.Fixes)
            {
                if (_graph.GetConsumers(fix.ShapeInitializer).Count != 1)
                {
                    Refuse($"the shape constant '{fix.ShapeInitializer}' is shared");
                    return;
                }
            }
        }
    }
}
