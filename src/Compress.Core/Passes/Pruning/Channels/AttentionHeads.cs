using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;

namespace Compress.Core.Passes.Pruning.Channels;

/// <summary>
/// The attention-head groups of an ONNX graph (algorithms.md §14): multi-head attention as PyTorch and most exporters
/// write it — q/k/v = x·W (+ b) reshaped to [B, T, H, D], transposed to heads first (K to [B, H, D, T]), scores Q·Kᵀ
/// scaled and masked, Softmax, ·V, transposed back and reshaped to [B, T, H·D] into the output projection o. Head h is
/// columns [hD, (h+1)D) of W_q, W_k, W_v and their biases and rows [hD, (h+1)D) of W_o; removing it also lowers the head
/// count in the three split shapes and the merged width in the merge shape, which the group rewrites as constants of
/// its own (the export may share them between layers). A block whose shapes the engine cannot rewrite, or whose values
/// something else reads, is a group with a <see cref="ChannelGroup.Refusal"/>.
/// </summary>
public static class AttentionHeads
{
    /// <summary>Every attention block whose q/k/v projections are constant MatMuls, one group each, keyed by its producers.</summary>
    public static IReadOnlyList<ChannelGroup> Find(OnnxGraph graph, IReadOnlyList<NodeProto> order)
    {
        var index = new Dictionary<NodeProto, int>(ReferenceEqualityComparer.Instance);
        for (var i = 0; i < order.Count; i++)
        {
            index[order[i]] = i;
        }

        var groups = new List<ChannelGroup>();
        var ranks = new Dictionary<string, int?>(StringComparer.Ordinal); // shared: the blocks come in graph order
        foreach (var softmax in order.Where(n => n.OpType == "Softmax" && string.IsNullOrEmpty(n.Domain)))
        {
            if (AttentionBlock.Match(graph, softmax) is { } block)
            {
                groups.Add(new Analysis(graph, block, index, ranks).Run());
            }
        }

        return groups;
    }

    /// <summary>Checks a matched block and collects its slices, the shape rewrites and the values that change.</summary>
    private sealed class Analysis
    {
        private readonly OnnxGraph _graph;
        private readonly AttentionBlock _block;
        private readonly ChannelGroup _group;
        private readonly long _heads;
        private readonly Dictionary<string, int?> _ranks;

        public Analysis(OnnxGraph graph, AttentionBlock block, Dictionary<NodeProto, int> order, Dictionary<string, int?> ranks)
        {
            _graph = graph;
            _block = block;
            _ranks = ranks;
            var producers = new[] { block.Q.Projection, block.K.Projection, block.V.Projection };
            var seed = producers.MinBy(p => order[p])!;
            // The head count, as far as the split shapes give it; checked in Run (a group needs its count to exist).
            _heads = Heads(block.Q) ?? Heads(block.K) ?? Heads(block.V) ?? 1;
            _group = new ChannelGroup(seed, _heads) { Heads = true };
            foreach (var producer in producers.OrderBy(p => order[p]))
            {
                _group.Producers.Add(producer);
            }
        }

        private void Refuse(string why) => _group.Refusal ??= why;

        public ChannelGroup Run()
        {
            var producers = _group.Producers;
            if (producers.Distinct(ReferenceEqualityComparer.Instance).Count() != 3)
            {
                Refuse("q, k and v come from one projection");
                return _group;
            }

            if (Heads(_block.Q) is null || Heads(_block.K) is null || Heads(_block.V) is null)
            {
                var unknown = new[] { _block.Q, _block.K, _block.V }.First(b => Heads(b) is null);
                Refuse($"the head count of '{OnnxGraph.Describe(unknown.Split)}' is not a constant the engine can find");
                return _group;
            }

            if (Heads(_block.K) != _heads || Heads(_block.V) != _heads)
            {
                Refuse("q, k and v are split into different head counts");
                return _group;
            }

            var dq = Width(_block.Q) / _heads;
            var dk = Width(_block.K) / _heads;
            var dv = Width(_block.V) / _heads;
            if (dq != dk)
            {
                Refuse($"q and k have heads of {dq} and {dk} features");
                return _group;
            }

            var transposes = new[] { _block.Q, _block.K, _block.V }.SelectMany(b => b.Path).Concat(_block.Back).Where(n => n.OpType == "Transpose");
            if (transposes.FirstOrDefault(t => Perm(t) is null) is { } bad)
            {
                Refuse($"the perm of '{OnnxGraph.Describe(bad)}' is not a permutation of the four axes");
                return _group;
            }

            // The layouts: Q and V to [B, H, T, D], K to [B, H, D, T]; the context back to [B, T, H, D].
            if (!Layout(_block.Q, [0, 2, 1, 3]) || !Layout(_block.K, [0, 2, 3, 1]) || !Layout(_block.V, [0, 2, 1, 3])
                || !Permutes(_block.Back, [0, 2, 1, 3]))
            {
                Refuse("its Transposes do not put the heads on axis 1 of the scores");
                return _group;
            }

            Branch(_block.Q, dq);
            Branch(_block.K, dk);
            Branch(_block.V, dv);
            Scores();
            Merge(dv);
            if (_group.Refusal is null && _group.SliceConflict(_graph) is { } conflict)
            {
                Refuse(conflict);
            }

            return _group;
        }

        /// <summary>The heads of a branch: from the split shape's entries 2 (H) and 3 (D), one of which may be −1.</summary>
        private long? Heads(AttentionBranch branch)
        {
            var width = Width(branch);
            var h = ShapeEntries.Entry(_graph, branch.Split, 2, 4)?.Value;
            var d = ShapeEntries.Entry(_graph, branch.Split, 3, 4)?.Value;
            return (h, d) switch
            {
                ( > 0, > 0) when h * d == width => h,
                ( > 0, -1) when width % h == 0 => h,
                (-1, > 0) when width % d == 0 => width / d,
                _ => null,
            };
        }

        private long Width(AttentionBranch branch) => _graph.GetInitializer(branch.Projection.Input[1])!.Dims[1];

        private bool Layout(AttentionBranch branch, long[] expected) => Permutes(branch.Path.Where(n => n.OpType == "Transpose").ToList(), expected);

        /// <summary>A Transpose's perm (the default reverses the axes) when it is a permutation of 0…3, else null.</summary>
        private static long[]? Perm(NodeProto transpose)
        {
            var perm = transpose.Ints("perm") ?? [3, 2, 1, 0];
            return perm.Length == 4 && perm.Order().SequenceEqual([0L, 1, 2, 3]) ? perm : null;
        }

        /// <summary>Whether the Transposes in order compose to <paramref name="expected"/> on a rank-4 value.</summary>
        private static bool Permutes(List<NodeProto> transposes, long[] expected)
        {
            long[] total = [0, 1, 2, 3];
            foreach (var transpose in transposes)
            {
                if (Perm(transpose) is not { } perm)
                {
                    return false;
                }

                total = perm.Select(p => total[p]).ToArray(); // out[i] = in[perm[i]]
            }

            return total.SequenceEqual(expected);
        }

        /// <summary>A branch's slices (W columns, bias entries), its split shape's head count, and its values' readers.</summary>
        private void Branch(AttentionBranch branch, long headSize)
        {
            var projection = branch.Projection;
            _group.Slices.Add(new ChannelSlice(projection.Input[1], projection, 1, 0, headSize, SliceRole.Producer));
            var width = Width(branch);
            var value = projection.Output[0];
            ReadLast(value, branch.Bias ?? branch.Split);
            if (branch.Bias is { } add)
            {
                var bias = _graph.GetInitializer(add.Input.First(i => _graph.GetInitializer(i) is not null))!;
                if (bias.Dims.Count == 0 || bias.Dims[^1] != width || bias.Dims.Take(bias.Dims.Count - 1).Any(d => d != 1))
                {
                    Refuse($"the bias of '{OnnxGraph.Describe(add)}' is not one value per feature");
                    return;
                }

                _group.Slices.Add(new ChannelSlice(bias.Name, add, bias.Dims.Count - 1, 0, headSize, SliceRole.Parameter));
                value = add.Output[0];
                ReadLast(value, branch.Split);
            }

            if (ShapeEntries.Entry(_graph, branch.Split, 2, 4) is { Value: > 0 } count)
            {
                Fix(count, 1);
            }

            // Along the path the head axis moves with each Transpose: [B, T, H, D] has it at 2.
            value = branch.Split.Output[0];
            long[] layout = [0, 1, 2, 3];
            foreach (var node in branch.Path)
            {
                Read(value, Array.IndexOf(layout, 2L), node);
                if (node.OpType == "Transpose")
                {
                    var perm = Perm(node)!;
                    layout = perm.Select(p => layout[p]).ToArray();
                }
                else if (node.Input.Select(_graph.GetInitializer).FirstOrDefault(c => c is not null) is { } scale && OnnxElementTypes.ElementCount(scale.Dims) != 1)
                {
                    Refuse($"'{OnnxGraph.Describe(node)}' scales the heads by a constant that is not a scalar");
                }

                value = node.Output[0];
            }

            var reader = branch == _block.V ? _block.Context : _block.Scores;
            Read(value, 1, reader);
        }

        /// <summary>The scores' scale and mask (a constant with one value per head is sliced), Softmax, and the probabilities.</summary>
        private void Scores()
        {
            var value = _block.Scores.Output[0];
            foreach (var node in _block.Masking)
            {
                Read(value, 1, node);
                foreach (var side in node.Input.Where(i => i != value))
                {
                    Side(node, side);
                }

                value = node.Output[0];
            }

            Read(value, 1, _block.Softmax);
            // Before opset 13 Softmax flattens its input to 2-D at 'axis' (default 1) and normalises the second part: axis 1
            // would normalise over heads and keys together, so removing a head would change the others' probabilities.
            var opset = _graph.GetOpsetVersion("") ?? 1;
            var explicitAxis = _block.Softmax.Attribute.Any(a => a.Name == "axis");
            var axis = _block.Softmax.Int("axis", opset >= 13 ? -1 : 1);
            if (axis is not (-1 or 3))
            {
                Refuse(opset < 13 && !explicitAxis
                    ? $"'{OnnxGraph.Describe(_block.Softmax)}' has no axis at opset {opset}, so it normalises over axes 1 to 3 (heads and keys together), not the keys"
                    : $"'{OnnxGraph.Describe(_block.Softmax)}' normalises along axis {axis}, not the keys");
            }

            value = _block.Softmax.Output[0];
            foreach (var node in _block.Probabilities)
            {
                Read(value, 1, node);
                value = node.Output[0];
            }

            Read(value, 1, _block.Context);
        }

        /// <summary>An input added to (or scaling) the scores [B, H, T, T]: it must have one value for all heads, or a constant one per head.</summary>
        private void Side(NodeProto node, string side)
        {
            var name = OnnxGraph.Describe(node);
            if (_graph.GetInitializer(side) is { } constant)
            {
                var rank = constant.Dims.Count;
                if (rank > 4)
                {
                    Refuse($"the constant '{side}' of '{name}' has more axes than the scores");
                }
                else if (rank >= 3 && constant.Dims[rank - 3] == _heads && _heads > 1)
                {
                    _group.Slices.Add(new ChannelSlice(side, node, rank - 3, 0, 1, SliceRole.Parameter));
                }
                else if (rank >= 3 && constant.Dims[rank - 3] != 1)
                {
                    Refuse($"the constant '{side}' of '{name}' does not broadcast over the heads");
                }

                return;
            }

            if (StaticShape.Of(_graph, side) is not { } dims || dims.Length > 4 || (dims.Length >= 3 && dims[^3] != 1))
            {
                Refuse($"'{side}', which '{name}' combines with the scores, may hold one value per head");
            }
        }

        /// <summary>The context back to [B, T, H, D], the merge Reshape's width, and the output projection's rows.</summary>
        private void Merge(long headSize)
        {
            var value = _block.Context.Output[0];
            long[] layout = [0, 1, 2, 3]; // the context is [B, H, T, D]: heads at 1
            foreach (var transpose in _block.Back)
            {
                Read(value, Array.IndexOf(layout, 1L), transpose);
                var perm = Perm(transpose)!;
                layout = perm.Select(p => layout[p]).ToArray();
                value = transpose.Output[0];
            }

            Read(value, 2, _block.Merge);
            var width = ShapeEntries.Entry(_graph, _block.Merge, 2, 3);
            if (width is null || width.Value == 0 || (width.Value > 0 && width.Value != _heads * headSize))
            {
                Refuse($"the merged width of '{OnnxGraph.Describe(_block.Merge)}' is not a constant the engine can find");
                return;
            }

            if (width.Value > 0)
            {
                Fix(width, headSize);
            }

            var output = _block.Output;
            var weight = _graph.GetInitializer(output.Input[1])!;
            if (weight.DataType != (int)TensorProto.Types.DataType.Float || weight.Dims[0] != _heads * headSize)
            {
                Refuse($"'{OnnxGraph.Describe(output)}' reads {weight.Dims[0]} features where the heads give {_heads * headSize}");
                return;
            }

            ReadLast(_block.Merge.Output[0], output);
            _group.Slices.Add(new ChannelSlice(weight.Name, output, 0, 0, headSize, SliceRole.Consumer));
        }

        /// <summary>
        /// <paramref name="value"/> (rank <paramref name="rank"/>, heads on <paramref name="axis"/>) joins the group, read by
        /// <paramref name="expected"/> and otherwise only by Shape nodes whose Gathers or Slices pick other axes.
        /// </summary>
        private void Read(string value, long axis, NodeProto expected, int rank = 4) => Read(value, expected, shape => ShapeReadersSkip(shape, axis, rank, last: false));

        /// <summary>
        /// As <see cref="Read(string, long, NodeProto, int)"/> for x·W (+ b) and the merged context, heads on the last axis:
        /// x·W has x's rank, which may be other than 3 ([T, C] …), so a Shape reader needs the rank, at least as a lower
        /// bound (StaticShape.MinRank), and a Gather or Slice that could reach the last axis at any rank that bound allows
        /// leaves the block whole.
        /// </summary>
        private void ReadLast(string value, NodeProto expected)
        {
            Read(value, expected, shape =>
            {
                if (StaticShape.MinRank(_graph, value, _ranks) is not { } rank)
                {
                    Refuse($"'{value}' has its shape read, and its rank is not known");
                    return false;
                }

                if (!ShapeReadersSkip(shape, rank - 1, rank, last: true))
                {
                    Refuse($"'{OnnxGraph.Describe(_graph.GetProducer(shape)!)}' may read the last axis of '{value}', which holds the heads (its rank is {rank} or more)");
                    return false;
                }

                return true;
            });
        }

        private void Read(string value, NodeProto expected, Func<string, bool> shapeReadersSkip)
        {
            _group.Values.Add(value);
            if (_graph.IsGraphOutput(value))
            {
                Refuse($"its heads reach the graph output '{value}'");
                return;
            }

            foreach (var reader in _graph.GetConsumers(value))
            {
                if (ReferenceEquals(reader, expected) && reader.Input.Count(i => i == value) == 1)
                {
                    continue;
                }

                if (reader.OpType != "Shape" || reader.Attribute.Count > 0 || !shapeReadersSkip(reader.Output[0]))
                {
                    Refuse($"'{OnnxGraph.Describe(reader)}' ({reader.OpType}) reads '{value}'");
                    return;
                }
            }
        }

        /// <summary>
        /// Whether every reader of a Shape output (of a rank-<paramref name="rank"/> value) is a Gather of constant indices,
        /// or a Slice of constant bounds, none of which is <paramref name="axis"/>. With <paramref name="last"/> the value's
        /// rank is only known to be at least <paramref name="rank"/> and the heads are its last axis: an index or slice end
        /// that could be that axis at a larger rank counts as reading it.
        /// </summary>
        private bool ShapeReadersSkip(string shape, long axis, int rank, bool last)
        {
            if (_graph.IsGraphOutput(shape))
            {
                return false;
            }

            foreach (var reader in _graph.GetConsumers(shape))
            {
                if (reader.Input[0] != shape)
                {
                    return false;
                }

                if (reader.OpType == "Gather")
                {
                    if (reader.Int("axis", 0) != 0 || _graph.GetInitializer(reader.Input[1]) is not { } indices || StaticShape.Int64s(indices) is not { } values
                        || values.Any(i => last ? i == -1 || i >= rank - 1 : i < -rank || i >= rank || (i < 0 ? i + rank : i) == axis))
                    {
                        return false;
                    }
                }
                else if (reader.OpType != "Slice")
                {
                    return false;
                }
                else if (last)
                {
                    // A negative end stops before the last axis at every rank; a positive one only if below the bound's last axis.
                    if (ShapeEntries.SliceBounds(_graph, reader) is not { } bounds || (bounds.End >= 0 && bounds.End > rank - 1))
                    {
                        return false;
                    }
                }
                else if (ShapeEntries.SliceRange(_graph, reader, rank) is not { } range || (axis >= range.Start && axis < range.End))
                {
                    return false;
                }
            }

            return true;
        }

        /// <summary>The constant holding <paramref name="entry"/> gets a copy of its own with the entry lowered by the removed heads times <paramref name="perHead"/>.</summary>
        private void Fix(ShapeEntry entry, long perHead)
        {
            if (entry.Node.OpType == "Concat" && _graph.GetConsumers(entry.Node.Output[0]).Any(r => !IsGroupReshape(r)))
            {
                Refuse($"the shape '{entry.Node.Output[0]}' is read outside the attention block");
                return;
            }

            var fix = new ShapeFix(entry.Node, entry.Input, entry.Values, entry.Element, perHead);
            if (!_group.ShapeFixes.Any(f => ReferenceEquals(f.Node, fix.Node) && f.Input == fix.Input))
            {
                _group.ShapeFixes.Add(fix);
            }
        }

        private bool IsGroupReshape(NodeProto node) =>
            ReferenceEquals(node, _block.Q.Split) || ReferenceEquals(node, _block.K.Split) || ReferenceEquals(node, _block.V.Split) || ReferenceEquals(node, _block.Merge);
    }
}
