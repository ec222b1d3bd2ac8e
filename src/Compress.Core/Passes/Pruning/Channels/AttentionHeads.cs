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
        var sizes = new Dictionary<string, long?[]?>(StringComparer.Ordinal);
        foreach (var softmax in order.Where(n => n.OpType == "Softmax" && string.IsNullOrEmpty(n.Domain)))
        {
            if (AttentionBlock.Match(graph, softmax) is { } block)
            {
                groups.Add(new Analysis(graph, block, index, ranks, sizes).Run());
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
        private readonly Dictionary<string, long?[]?> _sizes;

        /// <summary>4: the heads an axis of their own, [B, T, H, D]; 3: merged with the batch, [T, B·H, D] (nn.MultiheadAttention).</summary>
        private readonly int _rank;

        /// <summary>Whether q, k and v are three parts of one projection; then <see cref="_parts"/> gives each one's place in it.</summary>
        private readonly bool _fused;
        private readonly Dictionary<AttentionBranch, int> _parts = new(ReferenceEqualityComparer.Instance);
        private long _share;

        public Analysis(OnnxGraph graph, AttentionBlock block, Dictionary<NodeProto, int> order, Dictionary<string, int?> ranks, Dictionary<string, long?[]?> sizes)
        {
            _graph = graph;
            _block = block;
            _ranks = ranks;
            _sizes = sizes;
            _rank = block.Q.Path.FirstOrDefault(n => n.OpType == "Transpose")?.Ints("perm") is { Length: 3 } ? 3 : 4;
            var producers = new[] { block.Q.Projection, block.K.Projection, block.V.Projection };
            _fused = producers.Distinct(ReferenceEqualityComparer.Instance).Count() == 1 && Branches.All(b => b.Chunk is not null);
            if (_fused)
            {
                Chunks();
            }

            var seed = producers.MinBy(p => order[p])!;
            // The head count, as far as the split shapes give it; checked in Run (a group needs its count to exist).
            _heads = Heads(block.Q) ?? Heads(block.K) ?? Heads(block.V) ?? 1;
            _group = new ChannelGroup(seed, _heads) { Heads = true };
            foreach (var producer in producers.Distinct(ReferenceEqualityComparer.Instance).Cast<NodeProto>().OrderBy(p => order[p]))
            {
                _group.Producers.Add(producer);
            }
        }

        private AttentionBranch[] Branches => [_block.Q, _block.K, _block.V];

        /// <summary>Why the fused projection's parts cannot be followed (set by <see cref="Chunks"/>), or null.</summary>
        private string? _chunkRefusal;

        private void Refuse(string why) => _group.Refusal ??= why;

        public ChannelGroup Run()
        {
            if (!_fused && (_group.Producers.Count != 3 || Branches.Any(b => b.Chunk is not null)))
            {
                Refuse(_group.Producers.Count < 3 ? "q, k and v come from one projection, not as three parts of it" : "q, k or v is part of a projection the others do not share");
                return _group;
            }

            if (_chunkRefusal is not null)
            {
                Refuse(_chunkRefusal);
                return _group;
            }

            if (Heads(_block.Q) is null || Heads(_block.K) is null || Heads(_block.V) is null)
            {
                var unknown = Branches.First(b => Heads(b) is null);
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

            var transposes = Branches.SelectMany(b => b.Path).Concat(_block.Back).Where(n => n.OpType == "Transpose");
            if (transposes.FirstOrDefault(t => Perm(t) is null) is { } bad)
            {
                Refuse($"the perm of '{OnnxGraph.Describe(bad)}' is not a permutation of the {(_rank == 4 ? "four" : "three")} axes");
                return _group;
            }

            // The layouts: Q and V to [B, H, T, D], K to [B, H, D, T]; the context back to [B, T, H, D]. At rank 3 the same
            // with B·H as one axis: Q and V [T, B·H, D] to [B·H, T, D], K to [B·H, D, T], the context back to [T, B·H, D].
            long[] heads = _rank == 4 ? [0, 2, 1, 3] : [1, 0, 2];
            if (!Layout(_block.Q, heads) || !Layout(_block.K, _rank == 4 ? [0, 2, 3, 1] : [1, 2, 0]) || !Layout(_block.V, heads)
                || !Permutes(_block.Back, heads))
            {
                Refuse($"its Transposes do not put the heads on axis {_rank - 3} of the scores");
                return _group;
            }

            if (_fused)
            {
                Fused(dq);
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

        /// <summary>
        /// The heads of a branch: from the split shape's entries 2 (H) and 3 (D), one of which may be −1; at rank 3 from
        /// entry 2 (D), entry 1 being B·H.
        /// </summary>
        private long? Heads(AttentionBranch branch)
        {
            var width = Width(branch);
            if (width <= 0)
            {
                return null;
            }

            if (_rank == 3)
            {
                return ShapeEntries.Entry(_graph, branch.Split, 2, 3, _sizes)?.Value is > 0 and var size && width % size == 0 ? width / size : null;
            }

            var h = ShapeEntries.Entry(_graph, branch.Split, 2, 4, _sizes)?.Value;
            var d = ShapeEntries.Entry(_graph, branch.Split, 3, 4, _sizes)?.Value;
            return (h, d) switch
            {
                ( > 0, > 0) when h * d == width => h,
                ( > 0, -1) when width % h == 0 => h,
                (-1, > 0) when width % d == 0 => width / d,
                _ => null,
            };
        }

        /// <summary>The branch's columns of its projection: all of them, or its part of a fused one (0 when not found).</summary>
        private long Width(AttentionBranch branch) => _fused ? _share : ChannelGroups.Produced(_graph, branch.Projection)!.Value.Channels;

        /// <summary>The projection weight's axis of its output features (1 for MatMul; 0 for a Gemm with transB).</summary>
        private int FeatureAxis(AttentionBranch branch) => ChannelGroups.Produced(_graph, branch.Projection)!.Value.Axis;

        private bool Layout(AttentionBranch branch, long[] expected) => Permutes(branch.Path.Where(n => n.OpType == "Transpose").ToList(), expected);

        /// <summary>A Transpose's perm (the default reverses the axes) when it is a permutation of the block's axes, else null.</summary>
        private long[]? Perm(NodeProto transpose)
        {
            var perm = transpose.Ints("perm") ?? Enumerable.Range(0, _rank).Reverse().Select(i => (long)i).ToArray();
            return perm.Length == _rank && perm.Order().SequenceEqual(Enumerable.Range(0, _rank).Select(i => (long)i)) ? perm : null;
        }

        /// <summary>The axes of a value of the block's rank, unmoved.</summary>
        private long[] Identity => Enumerable.Range(0, _rank).Select(i => (long)i).ToArray();

        /// <summary>Where <paramref name="layout"/>'s axes are after <paramref name="transpose"/> (a permutation checked in Run): out[i] = in[perm[i]].</summary>
        private long[] Moved(long[] layout, NodeProto transpose) => Perm(transpose)!.Select(p => layout[p]).ToArray();

        /// <summary>Whether the Transposes in order compose to <paramref name="expected"/> on a value of the block's rank.</summary>
        private bool Permutes(List<NodeProto> transposes, long[] expected)
        {
            var total = Identity;
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

        /// <summary>
        /// The parts of a fused projection: a Split into three (its output index is the part) or three Slices of the last
        /// axis (the part from the start). Sets <see cref="_share"/>, <see cref="_parts"/>, or <see cref="_chunkRefusal"/>.
        /// </summary>
        private void Chunks()
        {
            var first = _block.Q.Chunk!;
            var source = first.Input[0];
            var total = ChannelGroups.Produced(_graph, _block.Q.Projection)!.Value.Channels;
            string? Why()
            {
                if (Branches.Any(b => b.Chunk!.Input[0] != source || b.Chunk.OpType != first.OpType))
                {
                    return "q, k and v are not parts of one value";
                }

                if (total % 3 != 0)
                {
                    return $"the fused projection '{OnnxGraph.Describe(_block.Q.Projection)}' has {total} features, not three equal parts";
                }

                _share = total / 3;
                if (first.OpType == "Split")
                {
                    if (Branches.Any(b => !ReferenceEquals(b.Chunk, first)) || first.Output.Count != 3)
                    {
                        return $"'{OnnxGraph.Describe(first)}' does not split the projection into q, k and v";
                    }

                    if (!LastAxis(source, first.Int("axis", 0)))
                    {
                        return $"'{OnnxGraph.Describe(first)}' may not split the last axis";
                    }

                    // The sizes: an attribute before opset 13, an input since; or neither (equal parts).
                    var given = first.Ints("split") ?? (first.Input.Count > 1 && first.Input[1].Length > 0
                        ? (_graph.GetInitializer(first.Input[1]) is { } sizes ? StaticShape.Int64s(sizes) : null) ?? []
                        : null);
                    if (given is not null && !given.SequenceEqual([_share, _share, _share]))
                    {
                        return $"the sizes of '{OnnxGraph.Describe(first)}' are not three constant equal parts";
                    }

                    foreach (var branch in Branches)
                    {
                        _parts[branch] = first.Output.IndexOf(branch.Split.Input[0]);
                    }
                }
                else
                {
                    foreach (var branch in Branches)
                    {
                        var slice = branch.Chunk!;
                        if (slice.Input.Count < 4 || ShapeEntries.Evaluate(_graph, slice.Input[3], _sizes) is not [var axis] || !LastAxis(source, axis)
                            || (slice.Input.Count > 4 && slice.Input[4].Length > 0 && ShapeEntries.Evaluate(_graph, slice.Input[4], _sizes) is not [1]))
                        {
                            return $"'{OnnxGraph.Describe(slice)}' may not take a part of the last axis";
                        }

                        if (ShapeEntries.Evaluate(_graph, slice.Input[1], _sizes, v => WidthLeaf(v, total)) is not [var start] || start < 0 || start % _share != 0 || start >= total)
                        {
                            return $"the start of '{OnnxGraph.Describe(slice)}' is not a third of the projection the engine can find";
                        }

                        _parts[branch] = (int)(start / _share);
                    }
                }

                return _parts.Values.Distinct().Count() == 3 && _parts.Values.All(p => p is >= 0 and < 3) ? null : "q, k and v are not three different parts of the projection";
            }

            _chunkRefusal = Why();
            if (_chunkRefusal is not null)
            {
                _share = 0;
            }
        }

        /// <summary>Whether <paramref name="axis"/> is the last axis of <paramref name="value"/> (−1, or its known rank less one).</summary>
        private bool LastAxis(string value, long axis) => axis == -1 || (StaticShape.Of(_graph, value, _sizes) is { } dims && axis == dims.Length - 1);

        /// <summary>The fused projection's width, <paramref name="width"/>, where a Gather of its Shape reads its last axis.</summary>
        private long[]? WidthLeaf(string value, long width)
        {
            if (_graph.GetProducer(value) is not { OpType: "Gather" } gather || gather.Int("axis", 0) != 0
                || _graph.GetProducer(gather.Input[0]) is not { OpType: "Shape", Attribute.Count: 0 } shape || !FusedValues().Contains(shape.Input[0]))
            {
                return null;
            }

            return ShapeEntries.Evaluate(_graph, gather.Input[1], _sizes) is [var index] && LastAxis(shape.Input[0], index) ? [width] : null;
        }

        /// <summary>The fused projection's output, and its bias Add's.</summary>
        private IEnumerable<string> FusedValues() =>
            _block.Q.Bias is { } bias ? [_block.Q.Projection.Output[0], bias.Output[0]] : [_block.Q.Projection.Output[0]];

        /// <summary>
        /// A fused projection: its output's (and bias Add's) readers — the parts, and Shape readers that only feed the
        /// Slices' bounds (nn.MultiheadAttention's chunk) — and the parts' bounds or the Split's sizes, which must follow the
        /// head count: computed bounds are checked for every count of heads that can remain, constant ones rewritten.
        /// </summary>
        private void Fused(long headSize)
        {
            var chunks = Branches.Select(b => b.Chunk!).Distinct(ReferenceEqualityComparer.Instance).Cast<NodeProto>().ToList();
            var total = 3 * _share;
            var projection = _block.Q.Projection;
            if (_block.Q.Bias is { } bias)
            {
                ReadLast(projection.Output[0], bias);
                ReadLast(bias.Output[0], chunks, FeedsChunkBounds);
            }
            else
            {
                ReadLast(projection.Output[0], chunks, FeedsChunkBounds);
            }

            var first = chunks[0];
            if (first.OpType == "Split")
            {
                if (first.Ints("split") is not null)
                {
                    _group.AttributeFixes.Add(new AttributeFix(first, "split", [headSize, headSize, headSize]));
                }
                else if (first.Input.Count > 1 && first.Input[1].Length > 0)
                {
                    var sizes = _graph.GetInitializer(first.Input[1])!;
                    for (var part = 0; part < 3; part++)
                    {
                        Fix(new ShapeEntry(first, 1, StaticShape.Int64s(sizes)!, part), headSize);
                    }
                }

                return;
            }

            foreach (var branch in Branches)
            {
                var slice = branch.Chunk!;
                var part = _parts[branch];
                foreach (var (input, end) in new[] { (1, 0), (2, 1) })
                {
                    bool Follows(long heads, long[]? bound)
                    {
                        var expected = (part + end) * heads * headSize;
                        return bound is [var b] && (b == expected || (end == 1 && part == 2 && b >= 3 * heads * headSize));
                    }

                    var follows = true;
                    for (var heads = 1L; heads <= _heads && follows; heads++)
                    {
                        var width = 3 * heads * headSize;
                        follows = Follows(heads, ShapeEntries.Evaluate(_graph, slice.Input[input], _sizes, v => WidthLeaf(v, width)));
                    }

                    if (follows)
                    {
                        continue;
                    }

                    if (_graph.GetInitializer(slice.Input[input]) is { } constant && StaticShape.Int64s(constant) is [var value] && Follows(_heads, [value]) && value <= total)
                    {
                        Fix(new ShapeEntry(slice, input, [value], 0), (part + end) * headSize, constant.Dims.Count == 0);
                    }
                    else
                    {
                        Refuse($"the {(end == 0 ? "start" : "end")} of '{OnnxGraph.Describe(slice)}' does not follow the head count");
                    }
                }
            }
        }

        /// <summary>Whether a Shape of the fused projection feeds, through integer arithmetic, only the bounds of the block's Slices.</summary>
        private bool FeedsChunkBounds(string shape)
        {
            var slices = Branches.Select(b => b.Chunk!).Where(c => c.OpType == "Slice").ToList();
            var pending = new Stack<string>([shape]);
            var seen = new HashSet<string>(StringComparer.Ordinal);
            while (pending.TryPop(out var value))
            {
                if (!seen.Add(value))
                {
                    continue; // reached again (a diamond in the arithmetic): its readers are checked already
                }

                if (seen.Count > 64 || _graph.IsGraphOutput(value))
                {
                    return false;
                }

                foreach (var reader in _graph.GetConsumers(value))
                {
                    if (slices.Any(s => ReferenceEquals(s, reader)))
                    {
                        if (reader.Input[0] == value || reader.Input.Skip(3).Contains(value))
                        {
                            return false;
                        }

                        continue;
                    }

                    if (reader.OpType is not ("Gather" or "Add" or "Sub" or "Mul" or "Div" or "Cast" or "Unsqueeze" or "Squeeze" or "Concat") || !string.IsNullOrEmpty(reader.Domain))
                    {
                        return false;
                    }

                    reader.Output.ToList().ForEach(pending.Push);
                }
            }

            return slices.Count > 0;
        }

        /// <summary>A branch's slices (W columns, bias entries), its split shape's head count, and its values' readers.</summary>
        private void Branch(AttentionBranch branch, long headSize)
        {
            var projection = branch.Projection;
            var offset = _fused ? _parts[branch] * _share : 0;
            _group.Slices.Add(new ChannelSlice(projection.Input[1], projection, FeatureAxis(branch), offset, headSize, SliceRole.Producer));
            var width = _fused ? 3 * _share : Width(branch);
            var value = projection.Output[0];
            if (projection.OpType == "Gemm" && projection.Input.Count > 2 && projection.Input[2].Length > 0)
            {
                if (_graph.GetInitializer(projection.Input[2]) is not { Dims: [var n] } gemmBias || n != width)
                {
                    Refuse($"the bias of '{OnnxGraph.Describe(projection)}' is not one constant per feature");
                    return;
                }

                _group.Slices.Add(new ChannelSlice(projection.Input[2], projection, 0, offset, headSize, SliceRole.Parameter));
            }

            if (!_fused)
            {
                ReadLast(value, branch.Bias ?? branch.Split);
            }

            if (branch.Bias is { } add)
            {
                var bias = _graph.GetInitializer(add.Input.First(i => _graph.GetInitializer(i) is not null))!;
                if (bias.Dims.Count == 0 || bias.Dims[^1] != width || bias.Dims.Take(bias.Dims.Count - 1).Any(d => d != 1))
                {
                    Refuse($"the bias of '{OnnxGraph.Describe(add)}' is not one value per feature");
                    return;
                }

                _group.Slices.Add(new ChannelSlice(bias.Name, add, bias.Dims.Count - 1, offset, headSize, SliceRole.Parameter));
                value = add.Output[0];
                if (!_fused)
                {
                    ReadLast(value, branch.Split);
                }
            }

            if (branch.Chunk is { } chunk)
            {
                ReadLast(chunk.OpType == "Split" ? chunk.Output[_parts[branch]] : chunk.Output[0], branch.Split);
            }

            if (_rank == 4 && ShapeEntries.Entry(_graph, branch.Split, 2, 4, _sizes) is { Value: > 0 } count)
            {
                Fix(count, 1);
            }
            else if (_rank == 3)
            {
                MergedCount(branch.Split);
            }

            // Along the path the head axis moves with each Transpose: [B, T, H, D] has it at 2, [T, B·H, D] at 1.
            value = branch.Split.Output[0];
            var layout = Identity;
            foreach (var node in branch.Path)
            {
                Read(value, Array.IndexOf(layout, _rank - 2L), node);
                if (node.OpType == "Transpose")
                {
                    layout = Moved(layout, node);
                }
                else if (node.Input.Select(_graph.GetInitializer).FirstOrDefault(c => c is not null) is { } scale && OnnxElementTypes.ElementCount(scale.Dims) != 1)
                {
                    Refuse($"'{OnnxGraph.Describe(node)}' scales the heads by a constant that is not a scalar");
                }

                value = node.Output[0];
            }

            var reader = branch == _block.V ? _block.Context : _block.Scores;
            Read(value, _rank - 3, reader);
        }

        /// <summary>
        /// At rank 3 the split shape's entry 1 is B·H: a constant (B = it / H), −1, or an Unsqueezed product of a run-time
        /// size and the constant H (nn.MultiheadAttention's bsz * num_heads), whose H is rewritten.
        /// </summary>
        private void MergedCount(NodeProto split)
        {
            var name = OnnxGraph.Describe(split);
            if (ShapeEntries.Entry(_graph, split, 1, 3, _sizes) is { } entry)
            {
                if (entry.Value > 0 && entry.Value % _heads == 0)
                {
                    Fix(entry, entry.Value / _heads);
                }
                else if (entry.Value != -1)
                {
                    Refuse($"entry 1 of the shape of '{name}' is {entry.Value}, not the batch times {_heads} heads");
                }

                return;
            }

            // The Concat's second entry: Unsqueeze(Mul(size, H)).
            if (_graph.GetProducer(split.Input[1]) is not { OpType: "Concat" } concat || concat.Input.Count != 3
                || _graph.GetProducer(concat.Input[1]) is not { OpType: "Unsqueeze" } unsqueeze
                || _graph.GetProducer(unsqueeze.Input[0]) is not { OpType: "Mul" } product
                || product.Input.Select((input, i) => (input, i)).Where(p => _graph.GetInitializer(p.input) is { Dims.Count: 0 } c && StaticShape.Int64s(c) is [var h] && h == _heads).ToList() is not [var (count, index)])
            {
                Refuse($"entry 1 of the shape of '{name}' is not a constant or a size times the {_heads} heads the engine can rewrite");
                return;
            }

            if (!FeedsBlockShapes(product.Output[0]))
            {
                Refuse($"the head count '{count}' of '{OnnxGraph.Describe(product)}' is read outside the attention block");
                return;
            }

            var fix = new ShapeFix(product, index, [_heads], 0, 1) { Scalar = true };
            if (!_group.ShapeFixes.Any(f => ReferenceEquals(f.Node, product) && f.Input == index))
            {
                _group.ShapeFixes.Add(fix);
            }
        }

        /// <summary>Whether the value reaches, through Unsqueeze, Concat and Cast, only the shape inputs of the block's Reshapes.</summary>
        private bool FeedsBlockShapes(string value, int depth = 0)
        {
            if (_graph.IsGraphOutput(value) || depth > 4)
            {
                return false;
            }

            foreach (var reader in _graph.GetConsumers(value))
            {
                var ok = reader.OpType switch
                {
                    "Reshape" => IsGroupReshape(reader) && reader.Input[1] == value && reader.Input[0] != value,
                    "Unsqueeze" or "Concat" or "Cast" => reader.Input[0] == value || reader.OpType == "Concat" ? FeedsBlockShapes(reader.Output[0], depth + 1) : false,
                    _ => false,
                };
                if (!ok)
                {
                    return false;
                }
            }

            return true;
        }

        /// <summary>The scores' scale and mask (a constant with one value per head is sliced), Softmax, and the probabilities.</summary>
        private void Scores()
        {
            var value = _block.Scores.Output[0];
            foreach (var node in _block.Masking)
            {
                Read(value, _rank - 3, node);
                foreach (var side in node.Input.Where(i => i != value))
                {
                    Side(node, side);
                }

                value = node.Output[0];
            }

            Read(value, _rank - 3, _block.Softmax);
            // Before opset 13 Softmax flattens its input to 2-D at 'axis' (default 1) and normalises the second part: axis 1
            // would normalise over heads and keys together, so removing a head would change the others' probabilities.
            var opset = _graph.GetOpsetVersion("") ?? 1;
            var explicitAxis = _block.Softmax.Attribute.Any(a => a.Name == "axis");
            var axis = _block.Softmax.Int("axis", opset >= 13 ? -1 : 1);
            if (axis != -1 && axis != _rank - 1)
            {
                Refuse(opset < 13 && !explicitAxis
                    ? $"'{OnnxGraph.Describe(_block.Softmax)}' has no axis at opset {opset}, so it normalises over axes 1 to {_rank - 1} ({(_rank == 4 ? "heads and keys" : "queries and keys")} together), not the keys"
                    : $"'{OnnxGraph.Describe(_block.Softmax)}' normalises along axis {axis}, not the keys");
            }

            value = _block.Softmax.Output[0];
            foreach (var node in _block.Probabilities)
            {
                Read(value, _rank - 3, node);
                value = node.Output[0];
            }

            Read(value, _rank - 3, _block.Context);
        }

        /// <summary>An input added to (or scaling) the scores [B, H, T, T]: it must have one value for all heads, or a constant one per head.</summary>
        private void Side(NodeProto node, string side)
        {
            var name = OnnxGraph.Describe(node);
            if (_graph.GetInitializer(side) is { } constant)
            {
                var rank = constant.Dims.Count;
                if (rank > _rank)
                {
                    Refuse($"the constant '{side}' of '{name}' has more axes than the scores");
                }
                else if (rank >= 3 && constant.Dims[rank - 3] == _heads && _heads > 1 && _rank == 4)
                {
                    _group.Slices.Add(new ChannelSlice(side, node, rank - 3, 0, 1, SliceRole.Parameter));
                }
                else if (rank >= 3 && constant.Dims[rank - 3] != 1)
                {
                    Refuse($"the constant '{side}' of '{name}' does not broadcast over the heads");
                }

                return;
            }

            if (StaticShape.Of(_graph, side) is not { } dims || dims.Length > _rank || (dims.Length >= 3 && dims[^3] != 1))
            {
                Refuse($"'{side}', which '{name}' combines with the scores, may hold one value per head");
            }
        }

        /// <summary>The context back to [B, T, H, D], the merge Reshape's width, and the output projection's rows.</summary>
        private void Merge(long headSize)
        {
            var value = _block.Context.Output[0];
            var layout = Identity; // the context is [B, H, T, D] or [B·H, T, D]
            foreach (var transpose in _block.Back)
            {
                Read(value, Array.IndexOf(layout, _rank - 3L), transpose);
                layout = Moved(layout, transpose);
                value = transpose.Output[0];
            }

            // [B, T, H, D] to [B, T, H·D] or to rows [B·T, H·D]; [T, B·H, D] to [T·B, H·D] (a Gemm's 2-D input).
            Read(value, _rank - 2, _block.Merge);
            var width = ShapeEntries.Entry(_graph, _block.Merge, _rank - 2, _rank - 1, _sizes) ?? ShapeEntries.Entry(_graph, _block.Merge, 1, 2, _sizes);
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
            var axis = output.OpType == "Gemm" && output.Int("transB", 0) == 1 ? 1 : 0;
            if (weight.DataType != (int)TensorProto.Types.DataType.Float || weight.Dims[axis] != _heads * headSize)
            {
                Refuse($"'{OnnxGraph.Describe(output)}' reads {weight.Dims[axis]} features where the heads give {_heads * headSize}");
                return;
            }

            ReadLast(_block.Merge.Output[0], output);
            _group.Slices.Add(new ChannelSlice(weight.Name, output, axis, 0, headSize, SliceRole.Consumer));
        }

        /// <summary>
        /// <paramref name="value"/> (rank <paramref name="rank"/>, heads on <paramref name="axis"/>) joins the group, read by
        /// <paramref name="expected"/> and otherwise only by Shape nodes whose Gathers or Slices pick other axes.
        /// </summary>
        private void Read(string value, long axis, NodeProto expected) => Read(value, [expected], shape => ShapeReadersSkip(shape, axis, _rank, last: false));

        /// <summary>
        /// As <see cref="Read(string, long, NodeProto, int)"/> for x·W (+ b) and the merged context, heads on the last axis:
        /// x·W has x's rank, which may be other than 3 ([T, C] …), so a Shape reader needs the rank, at least as a lower
        /// bound (StaticShape.MinRank), and a Gather or Slice that could reach the last axis at any rank that bound allows
        /// leaves the block whole.
        /// </summary>
        private void ReadLast(string value, NodeProto expected) => ReadLast(value, [expected], _ => false);

        /// <summary>As <see cref="ReadLast(string, NodeProto)"/> with several expected readers, and Shape readers <paramref name="accepted"/> besides.</summary>
        private void ReadLast(string value, IReadOnlyList<NodeProto> expected, Func<string, bool> accepted)
        {
            Read(value, expected, shape =>
            {
                if (accepted(shape))
                {
                    return true;
                }

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

        private void Read(string value, IReadOnlyList<NodeProto> expected, Func<string, bool> shapeReadersSkip)
        {
            _group.Values.Add(value);
            if (_graph.IsGraphOutput(value))
            {
                Refuse($"its heads reach the graph output '{value}'");
                return;
            }

            foreach (var reader in _graph.GetConsumers(value))
            {
                if (expected.Any(e => ReferenceEquals(reader, e)) && reader.Input.Count(i => i == value) == 1)
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
        private void Fix(ShapeEntry entry, long perHead, bool scalar = false)
        {
            if (entry.Node.OpType == "Concat" && _graph.GetConsumers(entry.Node.Output[0]).Any(r => !IsGroupReshape(r)))
            {
                Refuse($"the shape '{entry.Node.Output[0]}' is read outside the attention block");
                return;
            }

            var fix = new ShapeFix(entry.Node, entry.Input, entry.Values, entry.Element, perHead) { Scalar = scalar };
            if (!_group.ShapeFixes.Any(f => ReferenceEquals(f.Node, fix.Node) && f.Input == fix.Input && f.Element == fix.Element))
            {
                _group.ShapeFixes.Add(fix);
            }
        }

        private bool IsGroupReshape(NodeProto node) =>
            ReferenceEquals(node, _block.Q.Split) || ReferenceEquals(node, _block.K.Split) || ReferenceEquals(node, _block.V.Split) || ReferenceEquals(node, _block.Merge);
    }
}
