using Compress.Core.Evaluation;
using Compress.Core.Onnx;
using Microsoft.ML.OnnxRuntime;
using Compress.Core.Onnx.Proto;
using Compress.Core.Passes.SecondOrder;
using Compress.Core.Plans;
using Compress.Core.Torch;
using Compress.Spec;
using Compress.Spec.Methods;
using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Passes.Pruning.Channels;

/// <summary>
/// <c>"pattern": "channel"</c> (algorithms.md §14): whole channels removed from the graph, so tensors and kernels
/// shrink. The channels are those of each dependency group (<see cref="ChannelGroups"/>); a group loses the same
/// channels in every producer, consumer and coupled parameter, and never all of them. Channels are chosen by a group
/// score — with calibration data (method <c>obs</c>) the OBS cost of removing the channel's inputs from each consumer,
/// w_Sᵀ [(H⁻¹)_SS]⁻¹ w_S summed over the consumer's rows, as a fraction of the consumer's output energy and summed
/// over the group's consumers; without data, the coupled slices' Σw² each normalised by its tensor's mean — and, where
/// calibration data is at hand, each consumer's remaining inputs are refitted by least squares on its calibration
/// inputs (with its bias), so the consumer's output changes as little as it can. A ConvTranspose consumer is scored and
/// refitted as the Conv it equals, over its output pixels (<see cref="ConvTransposeGeometry"/>). Groups go in graph order, each on the
/// model as the groups before it left it.
/// </summary>
public sealed class ChannelPruner(PruneStep step) : ICompressionPass
{
    public string Name => $"prune/{step.Method}/channel";

    public void Apply(CompressionContext context)
    {
        TorchRuntime.EnsureLoaded();
        var graph = context.Model.Graph;
        var left = new List<string>();
        var chosen = Prunable(graph, step, left);
        var allocated = context.Plan.IsAllocated(step);
        if (!allocated && step.Scope == "global")
        {
            // A head is D columns of each of W_q, W_k, W_v and D rows of W_o, a channel one row or column: one budget over
            // both would count a head as one channel. Heads are cut per layer (scope "layer") or by an allocation,
            // whose costs are the cut model's measured multiply-adds or time.
            foreach (var group in chosen.Where(g => g.Heads))
            {
                left.Add($"{OnnxGraph.Describe(group.Seed)} (attention heads are cut per layer: use scope \"layer\" or an allocation)");
            }

            chosen.RemoveAll(g => g.Heads);
        }

        if (left.Count > 0)
        {
            context.Notes.Add($"{Name}: {left.Count} channel group{(left.Count == 1 ? "" : "s")} left whole: {string.Join("; ", left)}");
        }

        if (chosen.Count == 0)
        {
            context.Notes.Add($"{Name}: no channel group the step selects can be pruned; nothing removed");
            return;
        }

        var secondOrder = step.DataAware;
        var refit = context.HasCalibration;
        if (refit && !secondOrder)
        {
            context.Notes.Add($"{Name}: channels chosen by magnitude; the consumers refitted by least squares on the calibration data");
        }

        // Each group's widths once: they depend on the spec's later steps and the group's Convs, not on the count asked.
        var widths = chosen.ToDictionary(g => g.Key, g => ChannelWidths.For(context.Spec, step, g));
        var counts = allocated || step.Scope == "layer"
            ? chosen.ToDictionary(g => g.Key, g => Removable(g, context.Plan.For(step, Weight(g)).Sparsity ?? (allocated ? 0 : step.Sparsity), step.MaxLayerSparsity, widths[g.Key]))
            : GlobalShares(context, chosen, widths, secondOrder);

        var int8 = chosen.Where(g => !g.Heads && widths[g.Key] == ChannelWidths.Int8Conv).ToList();
        if (int8.Count > 0)
        {
            var whole = int8.Where(g => counts[g.Key] == 0).Select(g => $"{OnnxGraph.Describe(g.Seed)} ({g.Channels})").ToList();
            context.Notes.Add($"{Name}: {int8.Count} group{(int8.Count == 1 ? "" : "s")} read or written by a Conv that the static int8 step after it " +
                "quantizes keep a multiple of 16 channels, never fewer (ONNX Runtime's fast int8 Conv kernel needs 16 output channels or more)" +
                (whole.Count == 0 ? "" : $"; left whole: {string.Join(", ", whole)}"));
        }

        // The model before this step, for the consumers' refit targets (a model with external data is not copied).
        var original = context.Model.ExternalData.Count == 0 ? new OnnxModel(context.Model.Proto.Clone()) : null;
        long before = 0, after = 0, headsBefore = 0, headsAfter = 0;
        var originals = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var key in chosen.Select(g => g.Key))
        {
            using var scope = NewDisposeScope();
            // The graph as the groups before this one left it: offsets behind a Concat and the consumers' inputs have moved.
            var group = ChannelGroups.Find(graph).First(g => g.Key == key);
            var remove = (int)counts[key];
            if (group.Heads)
            {
                headsBefore += group.Channels;
                headsAfter += group.Channels - remove;
            }
            else
            {
                before += group.Channels;
                after += group.Channels - remove;
            }

            if (!allocated && step.Scope == "global")
            {
                context.Plan.Record(step, new LayerPlan(Weight(group), PlanSource.GlobalShares) { Sparsity = remove / (double)group.Channels });
            }

            if (remove == 0)
            {
                continue;
            }

            context.Progress($"{Name}: {group}, removing {remove}");
            // The groups before left large-object garbage (the models serialized for ONNX Runtime, the replaced initializers):
            // collected before this group's n×n matrices are built, where the model is large enough for that to matter (a
            // full collection per group made the Fashion CNN's channel tests run 2 m 48 s instead of 2 m 2 s).
            if (context.OriginalBytes >= CollectedModelBytes)
            {
                GC.Collect();
            }
            var consumers = refit || secondOrder ? group.Consumers.Select(c => Consumer.Measure(context, c, step.Damping, original)).ToList() : [];
            var keep = secondOrder ? ObsGreedy(group, consumers, remove) : Keep(MagnitudeScores(context.Model, group), group.Channels - remove);
            if (refit)
            {
                var removed = ChannelSurgery.RemovedChannels(group.Channels, keep);
                foreach (var consumer in consumers)
                {
                    consumer.Refit(context.Model, removed);
                    consumer.Dispose(); // its E[z zᵀ] and E[z zₒᵀ] go before the next consumer's refit
                }
            }

            foreach (var slice in group.Slices.Where(s => s.Role != SliceRole.Parameter))
            {
                var tensor = graph.GetInitializer(slice.Initializer)!;
                originals.TryAdd(slice.Initializer, OnnxElementTypes.ElementCount(tensor.Dims));
            }

            ChannelSurgery.Remove(context.Model, group, keep);
            if (!refit)
            {
                consumers.ForEach(c => c.Dispose());
            }
        }

        foreach (var (weight, count) in originals)
        {
            var tensor = graph.GetInitializer(weight)!;
            var node = graph.GetConsumers(weight)[0];
            var record = context.Layer(weight, OnnxGraph.Describe(node), node.OpType, count);
            record.Sparsity = 1 - OnnxElementTypes.ElementCount(tensor.Dims) / (double)record.Parameters;
        }

        var heads = chosen.Count(g => g.Heads);
        var removedText = string.Join(", ", new[]
        {
            chosen.Count > heads ? $"{chosen.Count - heads} channel groups, {before - after:N0} of {before:N0} channels removed ({(before - after) / (double)Math.Max(1, before):P1})" : null,
            heads > 0 ? $"{heads} attention blocks, {headsBefore - headsAfter:N0} of {headsBefore:N0} heads removed ({(headsBefore - headsAfter) / (double)headsBefore:P1})" : null,
        }.Where(t => t is not null));
        context.Notes.Add($"{Name}: {removedText}" + (refit ? ", consumers refitted by least squares" : ""));
    }

    /// <summary>The weight whose plan sets the group's sparsity: its first producer's.</summary>
    internal static string Weight(ChannelGroup group) => group.Seed.Input[1];

    /// <summary>
    /// The dependency groups <paramref name="step"/> can cut: every producer selected, nothing refusing the cut. The
    /// others' reasons go to <paramref name="left"/> (a group only partly selected is named only when its seed is).
    /// </summary>
    internal static List<ChannelGroup> Prunable(OnnxGraph graph, SpecStep step, List<string> left)
    {
        var selected = new HashSet<NodeProto>(WeightSelection.Select(graph, step).Select(u => u.Node), ReferenceEqualityComparer.Instance);
        // com.microsoft.Attention projects q, k and v by a MatMul inside the op: a step that selects MatMuls selects it.
        selected.UnionWith(graph.Nodes.Where(n => ContribAttentionHeads.Is(n) && step.OpTypes.Contains("MatMul") && WeightSelection.Matches(n, step)));
        // A ConvTranspose writes channels as a Conv does (its weight's axis 1): a step that selects Convs selects it too.
        selected.UnionWith(graph.Nodes.Where(n => n.OpType == "ConvTranspose" && string.IsNullOrEmpty(n.Domain)
            && (step.OpTypes.Contains("Conv") || step.OpTypes.Contains("ConvTranspose")) && WeightSelection.Matches(n, step)));
        var chosen = new List<ChannelGroup>();
        foreach (var group in ChannelGroups.Find(graph))
        {
            if (group.Producers.FirstOrDefault(p => !selected.Contains(p)) is { } outside)
            {
                // A group with a producer the step does not select stays whole; only one the step selected is worth a note.
                if (selected.Contains(group.Seed))
                {
                    left.Add($"{OnnxGraph.Describe(group.Seed)} (its producer '{OnnxGraph.Describe(outside)}' is not selected)");
                }
            }
            else if (group.Refusal is { } why)
            {
                left.Add($"{OnnxGraph.Describe(group.Seed)} ({why})");
            }
            else
            {
                chosen.Add(group);
            }
        }

        return chosen;
    }

    /// <summary>
    /// How many of the group's channels go at <paramref name="sparsity"/>: capped by <c>maxLayerSparsity</c>, one always
    /// kept, and rounded to the widths the group's kernels run fastest (<see cref="ChannelWidths"/>). Float: on the
    /// ResNet-20 30% of the channels cut to odd counts ran 1.14× slower than the dense model while 50% (multiples of 8)
    /// ran 1.8× faster, and the Fashion CNN's conv1 (1 input channel) at 2, 4 and 8 of its 16 channels ran 0.0227, 0.029
    /// and 0.0406 ms at batch 1 (conv2 and fc1 halved), its conv1 taking 11 µs in each.
    /// </summary>
    internal static long Removable(ChannelGroup group, double sparsity, double maxLayerSparsity, ChannelWidths widths)
    {
        var remove = (long)Math.Round(group.Channels * Math.Min(sparsity, maxLayerSparsity));
        if (!group.Heads)
        {
            remove = widths.Round(group.Channels, remove);
        }

        return Math.Clamp(remove, 0, group.Channels - 1);
    }

    /// <summary>
    /// <c>scope: "global"</c>: the lowest-scoring channels over all groups (each group's scores divided by their mean, so
    /// groups compare), until the step's share of all channels is gone, no group past <c>maxLayerSparsity</c> or to zero.
    /// </summary>
    private Dictionary<string, long> GlobalShares(CompressionContext context, List<ChannelGroup> groups, Dictionary<string, ChannelWidths> widths, bool secondOrder)
    {
        var pool = new List<(double Score, int Group)>();
        for (var g = 0; g < groups.Count; g++)
        {
            using var scope = NewDisposeScope();
            var consumers = secondOrder ? groups[g].Consumers.Select(c => Consumer.Measure(context, c, step.Damping, null)).ToList() : [];
            var scores = secondOrder ? ObsScores(groups[g], consumers) : MagnitudeScores(context.Model, groups[g]);
            consumers.ForEach(c => c.Dispose());
            // Second-order scores are already fractions of each consumer's output energy, so they compare across groups;
            // magnitudes are divided by their group's mean.
            var normalised = (secondOrder ? scores : scores.div(scores.mean().clamp_min(1e-30))).data<double>().ToArray();
            pool.AddRange(normalised.Select(s => (s, g)));
        }

        var target = (long)Math.Round(step.Sparsity * groups.Sum(g => g.Channels));
        var removed = new long[groups.Count];
        long total = 0;
        foreach (var (_, g) in pool.Select((p, i) => (p, i)).OrderBy(p => p.p.Score).ThenBy(p => p.i).Select(p => p.p))
        {
            if (total >= target)
            {
                break;
            }

            if (removed[g] < Removable(groups[g], 1, step.MaxLayerSparsity, widths[groups[g].Key]))
            {
                removed[g]++;
                total++;
            }
        }

        return groups.Select((g, i) => (g.Key, removed[i])).ToDictionary(p => p.Key, p => p.Item2);
    }

    /// <summary>The <paramref name="count"/> highest-scoring channels, ascending (ties to the lower index).</summary>
    private static long[] Keep(Tensor scores, long count)
    {
        var values = scores.data<double>().ToArray();
        return Enumerable.Range(0, values.Length).OrderByDescending(i => values[i]).ThenBy(i => i).Take((int)count).Order().Select(i => (long)i).ToArray();
    }

    /// <summary>Data-free: Σw² of each producer's and consumer's slice of the channel, each divided by its mean over the channels.</summary>
    private static Tensor MagnitudeScores(OnnxModel model, ChannelGroup group)
    {
        var total = zeros(group.Channels, ScalarType.Float64);
        foreach (var slice in group.Slices.Where(s => s.Role != SliceRole.Parameter))
        {
            var weight = model.ToTorch(model.Graph.GetInitializer(slice.Initializer)!).to_type(ScalarType.Float64);
            var perIndex = weight.transpose(0, slice.Axis).reshape(weight.shape[slice.Axis], -1).square().sum(1);
            var perChannel = perIndex.narrow(0, slice.Offset, group.Channels * slice.Stride).reshape(group.Channels, slice.Stride).sum(1);
            total.add_(perChannel.div(perChannel.mean().clamp_min(1e-30)));
        }

        return total;
    }

    /// <summary>
    /// Second order (algorithms.md §3, §14): for each consumer, removing channel c's inputs S with the best update of the
    /// rest costs Σ_rows w_S [(H⁻¹)_SS]⁻¹ w_Sᵀ of output error; as a fraction of the consumer's output energy
    /// tr(W H Wᵀ), summed over the consumers.
    /// </summary>
    private static Tensor ObsScores(ChannelGroup group, List<Consumer> consumers)
    {
        var total = zeros(group.Channels, ScalarType.Float64);
        foreach (var consumer in consumers)
        {
            using var inverse = consumer.DampedInverse();
            total.add_(BlockCosts(inverse, consumer.Matrix, consumer.ChannelColumns(group.Channels), consumer.Energy()));
        }

        return total;
    }

    /// <summary>
    /// For each channel S (a row of <paramref name="columns"/>, [k, b]: its matrix columns) the OBS cost of removing its
    /// inputs, Σ_rows w_S [(H⁻¹)_SS]⁻¹ w_Sᵀ, divided by <paramref name="energy"/>; the diagonal blocks are read in place
    /// from the contiguous <paramref name="inverse"/>.
    /// </summary>
    private static Tensor BlockCosts(Tensor inverse, Tensor weights, Tensor columns, double energy)
    {
        var (k, b) = (columns.shape[0], columns.shape[1]);
        var at = columns.unsqueeze(2).mul(inverse.shape[1]).add(columns.unsqueeze(1)); // flat positions of the diagonal blocks
        var blocks = inverse.view(-1).index_select(0, at.flatten()).reshape(k, b, b);
        var w = weights.index_select(1, columns.flatten()).reshape(weights.shape[0], k, b).permute(1, 0, 2); // [k, out, b]
        return w.bmm(linalg.inv(blocks)).mul(w).sum([1, 2]).div(energy);
    }

    /// <summary>
    /// OBS over the group, one channel at a time: each round every consumer's kept inputs K have their least-squares
    /// weights W H_{·K} (H_KK)⁻¹ and each remaining channel the cost of removing its inputs S from them,
    /// w_S [((H_KK)⁻¹)_SS]⁻¹ w_Sᵀ as a fraction of the consumer's output energy, summed over the consumers; the cheapest
    /// channel goes. Correlated channels are thus not all kept or all removed together, as single scores would.
    /// </summary>
    private static long[] ObsGreedy(ChannelGroup group, List<Consumer> consumers, long remove)
    {
        return ChannelSurgery.RemovedChannels(group.Channels, ObsOrder(group, consumers, remove));
    }

    /// <summary>The channels <see cref="ObsGreedy"/> removes, in its order.</summary>
    private static long[] ObsOrder(ChannelGroup group, List<Consumer> consumers, long remove)
    {
        var order = new List<long>();
        var kept = Enumerable.Range(0, (int)group.Channels).Select(c => (long)c).ToList();
        var states = consumers.Select(c => new ObsState(c, group.Channels)).ToList();
        for (var round = 0; round < remove; round++)
        {
            using var scope = NewDisposeScope();
            var keptIndex = tensor(kept.ToArray());
            var cost = zeros(kept.Count, ScalarType.Float64);
            states.ForEach(s => cost.add_(s.Costs(keptIndex)));
            var values = cost.data<double>().ToArray();
            var cheapest = Enumerable.Range(0, values.Length).OrderBy(i => values[i]).ThenBy(i => i).First();
            states.ForEach(s => s.Remove(kept[cheapest]));
            order.Add(kept[cheapest]);
            kept.RemoveAt(cheapest);
        }

        states.ForEach(s => s.Dispose());
        return order.ToArray();
    }

    /// <summary>
    /// One consumer's side of <see cref="ObsOrder"/>: the inverse of its damped input Hessian and the least-squares weights
    /// on its inputs, inverted once and then downdated as channels go: removing channel inputs S leaves
    /// H⁻¹ − H⁻¹_{·S} (H⁻¹_SS)⁻¹ H⁻¹_{S·}, which on the rest is (H_KK)⁻¹ exactly (the Schur complement), and the weights
    /// w − w_S (H⁻¹_SS)⁻¹ H⁻¹_{S·}, the least-squares weights on the rest (the OBS update). A round costs O(n²b) instead
    /// of a fresh O(n³) inverse (on PP-OCRv4 rec a 3×3 consumer of 480 channels has n = 4,320), and the inverse stays in
    /// the matrix's own column order, so no permuted copy of an n×n matrix is made (a 640-channel 3×3 consumer's is 265 MB).
    /// </summary>
    private sealed class ObsState : IDisposable
    {
        private readonly Tensor _inverse; // [n, n]
        private readonly Tensor _weights; // [out, n]
        private readonly Tensor _columns; // [C, b]: each channel's matrix columns
        private readonly Tensor _product; // [n, n]: each round's H⁻¹_{·S} (H⁻¹_SS)⁻¹ H⁻¹_{S·}, one buffer for all rounds
        private readonly double _energy;

        public ObsState(Consumer consumer, long channels)
        {
            using var scope = NewDisposeScope();
            _columns = consumer.ChannelColumns(channels).DetachFromDisposeScope();
            _energy = consumer.Energy();
            // E[z zₒᵀ] and then E[z zᵀ] wait on disk once read, so that a 640-channel 3×3 consumer's order holds two
            // 265 MB matrices (the inverse and the round's product) rather than four.
            Tensor target; // W E[x xₒᵀ]ᵀ, its view of E[x xₒᵀ] gone before that is set aside
            using (NewDisposeScope())
            {
                target = consumer.Matrix.mm(consumer.Cross()).DetachFromDisposeScope();
            }

            consumer.SetAside(inputs: false);
            _inverse = consumer.DampedInverse().DetachFromDisposeScope();
            consumer.SetAside(inputs: true);
            _weights = target.mm(_inverse).DetachFromDisposeScope();
            target.Dispose();
            _product = empty_like(_inverse).DetachFromDisposeScope();
        }

        /// <summary>The cost of removing each of the channels <paramref name="kept"/> next, as a fraction of the output energy.</summary>
        public Tensor Costs(Tensor kept) => BlockCosts(_inverse, _weights, Rows(kept), _energy);

        /// <summary>Removes channel <paramref name="channel"/>: the downdates above, its rows and columns then exactly zero.</summary>
        public void Remove(long channel)
        {
            using var scope = NewDisposeScope();
            var s = Rows(tensor(new[] { channel })).flatten();
            var columns = _inverse.index_select(1, s); // H⁻¹_{·S}, [n, b]
            var pivot = linalg.inv(columns.index_select(0, s)); // (H⁻¹_SS)⁻¹
            var rows = pivot.mm(columns.t()); // (H⁻¹_SS)⁻¹ H⁻¹_{S·}, [b, n]
            _weights.sub_(_weights.index_select(1, s).mm(rows));
            // Into the one buffer (a β = 0 product, as mm makes): a fresh 265 MB temporary each round cost the 640-channel
            // 3×3 consumers more time in page faults than in arithmetic.
            _inverse.sub_(_product.addmm_(columns, rows, beta: 0, alpha: 1));
            _weights.index_fill_(1, s, 0);
            _inverse.index_fill_(0, s, 0).index_fill_(1, s, 0);
        }

        private Tensor Rows(Tensor channels) => _columns.index_select(0, channels);

        public void Dispose()
        {
            _inverse.Dispose();
            _weights.Dispose();
            _columns.Dispose();
            _product.Dispose();
        }
    }

    /// <summary>
    /// For the allocation (algorithms.md §18): the group cut alone on the model as it is, to each of the counts
    /// <paramref name="kept"/> below its size, as this step would cut it — the greedy OBS order (one run, down to the
    /// fewest), the consumers refitted by least squares, the channels removed — each count's cut models handed to
    /// <paramref name="measure"/> with its index. Cross-fitted: the consumers are refitted twice, once on the even
    /// calibration samples and once on the odd (<see cref="Consumer.Folds"/>), so that the caller can judge each cut on the
    /// samples its refit did not see; the models come as [fitted on even, fitted on odd], or as one fitted on all samples
    /// where there are fewer than two. The model itself is left as it was.
    /// </summary>
    internal static void CutAlone(CompressionContext context, ChannelGroup group, double damping, IReadOnlyList<long> kept, Action<int, IReadOnlyList<OnnxModel>> measure)
    {
        using var scope = NewDisposeScope();
        var consumers = group.Consumers.Select(c => Consumer.Measure(context, c, damping, null, folds: true)).ToList();
        var order = ObsOrder(group, consumers, group.Channels - kept.Min());
        var fitted = consumers.All(c => c.Folds is not null) ? consumers.Select(c => c.Folds!).ToList() : consumers.Select(c => new[] { c }).ToList();
        for (var i = 0; i < kept.Count; i++)
        {
            if (kept[i] >= group.Channels)
            {
                continue;
            }

            var removed = order.Take((int)(group.Channels - kept[i])).Order().ToArray();
            var models = new List<OnnxModel>();
            for (var fold = 0; fold < (fitted.Count > 0 ? fitted[0].Length : 1); fold++)
            {
                var model = new OnnxModel(context.Model.Proto.Clone());
                fitted.ForEach(c => c[fold].Refit(model, removed));
                var cut = ChannelGroups.Find(model.Graph).First(g => g.Key == group.Key);
                ChannelSurgery.Remove(model, cut, ChannelSurgery.RemovedChannels(group.Channels, removed));
                models.Add(model);
            }

            measure(i, models);
        }

        fitted.Where(f => f.Length > 1).SelectMany(f => f).ToList().ForEach(c => c.Dispose());
        consumers.ForEach(c => c.Dispose());
    }

    /// <summary>Models of at least this size have their garbage collected before each group's matrices are built.</summary>
    private const long CollectedModelBytes = 32L << 20;

    /// <summary>A refit's ridge after a cut, as a fraction of its inputs' mean square, for the step's <paramref name="damping"/>.</summary>
    internal static double RefitRidge(double damping) => damping * Consumer.RefitDamping;

    /// <summary>A consumer of the group: its weight as [out, cols] (float64) and the XᵀX/n of its calibration inputs, with its bias as a last constant column.</summary>
    private sealed class Consumer : IDisposable
    {
        private readonly ChannelSlice _slice;
        private readonly WeightUse _use;
        private readonly ConvTransposeGeometry? _transposed; // a ConvTranspose's matrix is its equivalent Conv's
        private readonly SpillableMatrix _augmented; // E[z zᵀ], [cols (+1), cols (+1)]
        private readonly SpillableMatrix _cross; // E[z zₒᵀ], the original model's inputs zₒ (or E[z zᵀ] again)
        private readonly TensorProto? _bias;
        private readonly long _kernelArea;

        private Consumer(ChannelSlice slice, WeightUse use, ConvTransposeGeometry? transposed, Tensor matrix, Tensor augmented, Tensor? cross, TensorProto? bias, long kernelArea, double damping)
        {
            (_slice, _use, _transposed, Matrix, _bias, _kernelArea) = (slice, use, transposed, matrix, bias, kernelArea);
            _augmented = new SpillableMatrix(augmented);
            _cross = cross is null ? _augmented : new SpillableMatrix(cross);
            using var scope = NewDisposeScope(); // no view outlives this, so a matrix set aside is freed
            Lambda = damping * Inputs().diagonal().mean().item<double>() + 1e-12;
        }

        public Tensor Matrix { get; }

        /// <summary>E[x xᵀ] (a view: dispose it before <see cref="SetAside"/>, or the matrix stays in memory).</summary>
        private Tensor Inputs() => Square(_augmented.Value);

        /// <summary>E[x xₒᵀ]ᵀ: the original model's inputs against the current ones (E[x xᵀ] where they are the same); a view.</summary>
        public Tensor Cross() => Square(_cross.Value).t();

        private Tensor Square(Tensor augmented) => augmented.narrow(0, 0, Matrix.shape[1]).narrow(1, 0, Matrix.shape[1]);

        /// <summary>
        /// Puts E[z zₒᵀ] (or, with <paramref name="inputs"/>, E[z zᵀ]) aside in a temporary file until the refit reads it
        /// again (<see cref="SpillableMatrix"/>); E[z zₒᵀ] that is E[z zᵀ] itself goes only with the latter.
        /// </summary>
        public void SetAside(bool inputs)
        {
            if (inputs)
            {
                _augmented.SetAside();
            }
            else if (_cross != _augmented)
            {
                _cross.SetAside();
            }
        }

        /// <summary>
        /// (E[x xᵀ] + λI)⁻¹, row-major. A 640-channel 3×3 consumer's n×n matrices are 265 MB each, so no damped copy is
        /// made: λ is added to E[x xᵀ]'s diagonal in place and the diagonal put back exactly after; and LAPACK's
        /// column-major inverse is transposed in place (<see cref="TransposeInPlace"/>), not copied.
        /// </summary>
        public Tensor DampedInverse()
        {
            Tensor inverse;
            using (NewDisposeScope())
            {
                var inputs = Inputs();
                var diagonal = inputs.diagonal();
                var saved = diagonal.clone();
                diagonal.add_(Lambda);
                try
                {
                    inverse = linalg.inv(inputs).DetachFromDisposeScope();
                }
                finally
                {
                    diagonal.copy_(saved);
                }
            }

            return inverse.is_contiguous() ? inverse : TransposeInPlace(inverse);
        }

        /// <summary>Square blocks of this many rows are swapped at a time by <see cref="TransposeInPlace"/>.</summary>
        private const long TransposeBlock = 256;

        /// <summary>
        /// The square column-major <paramref name="matrix"/> as a row-major tensor on the same storage: its transpose
        /// (the storage read row-major) transposed in place, a block pair at a time.
        /// </summary>
        private static Tensor TransposeInPlace(Tensor matrix)
        {
            var stored = matrix.t(); // row-major over the storage
            if (!stored.is_contiguous())
            {
                return matrix.contiguous();
            }

            var n = stored.shape[0];
            for (long i = 0; i < n; i += TransposeBlock)
            {
                for (long j = i; j < n; j += TransposeBlock)
                {
                    using var scope = NewDisposeScope();
                    var (rows, cols) = (Math.Min(TransposeBlock, n - i), Math.Min(TransposeBlock, n - j));
                    var upper = stored.narrow(0, i, rows).narrow(1, j, cols);
                    var lower = stored.narrow(0, j, cols).narrow(1, i, rows);
                    var saved = upper.clone();
                    if (i != j)
                    {
                        upper.copy_(lower.t());
                    }

                    lower.copy_(saved.t());
                }
            }

            matrix.Dispose();
            return stored;
        }

        public double Lambda { get; }

        /// <summary>The consumer's output energy tr(W E[x xᵀ] Wᵀ), which the OBS costs are fractions of.</summary>
        public double Energy()
        {
            using var scope = NewDisposeScope();
            return Matrix.mm(Inputs()).mul(Matrix).sum().clamp_min(1e-30).item<double>();
        }

        /// <summary>
        /// Where measured with folds: the consumer as measured on the even calibration samples alone and on the odd alone
        /// (for a held-out estimate of a cut's error); null without, or with fewer than two samples.
        /// </summary>
        public Consumer[]? Folds { get; private init; }

        /// <summary>The refit's ridge, in units of the scores' damping (10: on the Fashion CNN at 50%, 1 lost 0.5 point more, 100 lost 2).</summary>
        internal const double RefitDamping = 10;

        /// <summary>
        /// Streams the consumer's calibration inputs from the model as it is now and, where <paramref name="original"/> is
        /// given and its input has the same shape, from the original model too: the refit then aims at the consumer's
        /// output in the original model (E[z zₒᵀ]), so it also makes up for what the groups before it changed. With
        /// <paramref name="folds"/> the even and odd samples' sums are also kept apart (<see cref="Folds"/>); they add up to
        /// the whole, so this costs no extra run.
        /// </summary>
        public static Consumer Measure(CompressionContext context, ChannelSlice slice, double damping, OnnxModel? original, bool folds = false)
        {
            var graph = context.Model.Graph;
            var node = slice.Node;
            var weight = graph.GetInitializer(slice.Initializer)!;
            var outputAxis = node.OpType == "Conv" || (node.OpType == "Gemm" && node.Int("transB", 0) == 1) ? 0 : 1;
            var use = new WeightUse(node, 1, weight, outputAxis);
            // A ConvTranspose is fitted as the Conv it equals, over its output pixels (algorithms.md §14).
            var transposed = node.OpType == "ConvTranspose" ? ConvTransposeGeometry.Of(node, weight) : null;
            var stored = context.Model.ToTorch(weight);
            var matrix = (transposed?.ToMatrix(stored) ?? LayerMatrix.ToMatrix(stored, use)).to_type(ScalarType.Float64);
            var bias = node.OpType != "MatMul" && node.Input.Count > 2 && node.Input[2].Length > 0 ? graph.GetInitializer(node.Input[2]) : null;
            if (bias is not null && (bias.Dims.Count != 1 || bias.Dims[0] != matrix.shape[0]))
            {
                bias = null; // a broadcast bias is not refitted
            }

            var cols = matrix.shape[1];
            var size = cols + (bias is null ? 0 : 1);
            var sum = zeros(size, size, ScalarType.Float64);
            var cross = original is null ? null : zeros(size, size, ScalarType.Float64);
            var geometry = ConvGeometry.Of(use);
            Tensor Rows(Tensor x)
            {
                var rows = (transposed?.Rows(x) ?? (geometry is null ? x.reshape(1, -1, x.shape[^1]) : geometry.Im2Col(x))).reshape(-1, cols).to_type(ScalarType.Float64);
                return bias is null ? rows : cat([rows, ones(rows.shape[0], 1, ScalarType.Float64)], 1);
            }

            var input = node.Input[0];
            using var now = OrtModelRunner.Computing(context.Model, [input]);
            using var then = original is null ? null : OrtModelRunner.Computing(original, [input]);
            var data = context.Calibration;
            long count = 0;
            // Sample i of the calibration set is in fold i % 2; a batch starts at a multiple of Batch (even).
            var parts = folds && data.Count >= 2 ? new[] { zeros(size, size, ScalarType.Float64), zeros(size, size, ScalarType.Float64) } : null;
            var counts = new long[2];
            for (var start = 0; start < data.Count; start += Batch)
            {
                using var scope = NewDisposeScope();
                var n = Math.Min(Batch, data.Count - start);
                using var current = now.RunBatch(data, start, n, [input]);
                var x = LayerHessian.ToTorch(current[0]);
                if (parts is not null && x.shape[0] != n)
                {
                    sum.add_(parts[0]).add_(parts[1]); // the input's first axis is not the samples: no folds
                    parts = null;
                }

                Tensor? xOriginal = null;
                if (then is not null && cross is not null)
                {
                    using var before = then.RunBatch(data, start, n, [input]);
                    if (!before[0].GetTensorTypeAndShape().Shape.SequenceEqual(current[0].GetTensorTypeAndShape().Shape))
                    {
                        cross = null; // the original reads other channels here (an earlier group cut them): aim at the model as it is
                    }
                    else
                    {
                        xOriginal = LayerHessian.ToTorch(before[0]);
                    }
                }

                if (start + Batch >= data.Count)
                {
                    // The inputs are copied: ONNX Runtime's sessions (the model's part, their arenas) go before the n×n
                    // products are formed.
                    current.Dispose();
                    now.Dispose();
                    then?.Dispose();
                }

                // The rows a slice at a time along the first axis: a Conv's im2col rows in float64 would take gigabytes
                // for a batch of large images (a 3×3 Conv reading 64 channels at 112×112: 58 MB a sample).
                var length = x.shape[0];
                var perSlice = Math.Max(1, x.numel() / Math.Max(1, length) * (geometry?.KernelArea ?? (transposed is null ? 1 : transposed.KernelArea * transposed.StrideArea)) * sizeof(double));
                var step = Math.Clamp(MaxRowBytes / perSlice, 1, Math.Max(1, length));
                for (long at = 0; at < length; at += step)
                {
                    using var rows = NewDisposeScope();
                    var m = Math.Min(step, length - at);
                    var xs = x.narrow(0, at, m);
                    Tensor? z = null;
                    if (parts is not null)
                    {
                        for (var fold = 0; fold < 2; fold++)
                        {
                            var first = (fold - (start + at) % 2 + 2) % 2; // this slice's first sample of the fold
                            if (first >= m)
                            {
                                continue;
                            }

                            var zf = Rows(xs.index_select(0, arange(first, m, 2, ScalarType.Int64)));
                            using var product = zf.t().mm(zf); // each n×n product freed at once, not with the slice
                            parts[fold].add_(product);
                            counts[fold] += zf.shape[0];
                            count += zf.shape[0];
                        }
                    }
                    else
                    {
                        z = Rows(xs);
                        using var product = z.t().mm(z);
                        sum.add_(product);
                        count += z.shape[0];
                    }

                    if (xOriginal is not null && cross is not null)
                    {
                        z ??= Rows(xs);
                        using var product = z.t().mm(Rows(xOriginal.narrow(0, at, m)));
                        cross.add_(product);
                    }
                }
            }

            var kernelArea = node.OpType is "Conv" or "ConvTranspose" ? weight.Dims.Skip(2).Aggregate(1L, (a, b) => a * b) : 1;
            Consumer[]? foldConsumers = null;
            if (parts is not null)
            {
                sum.add_(parts[0]).add_(parts[1]);
                foldConsumers = [.. parts.Select((p, f) => new Consumer(slice, use, transposed, matrix.clone(), p.div(counts[f]), null, bias, kernelArea, damping))];
            }

            return new Consumer(slice, use, transposed, matrix, sum.div_(count), cross?.div_(count), bias, kernelArea, damping) { Folds = foldConsumers };
        }

        /// <summary>Calibration samples per ONNX Runtime run.</summary>
        private const int Batch = 32;

        /// <summary>The most float64 input rows formed at a time (the Hessian sums are the same whatever the slices).</summary>
        private const long MaxRowBytes = 64L << 20;

        /// <summary>The matrix columns of each group channel, [C, Stride·kh·kw].</summary>
        public Tensor ChannelColumns(long channels)
        {
            var width = _slice.Stride * _kernelArea;
            return arange(channels, ScalarType.Int64).mul(width).add(_slice.Offset * _kernelArea).unsqueeze(1)
                .add(arange(width, ScalarType.Int64).unsqueeze(0));
        }

        /// <summary>
        /// The kept inputs K (and bias) refitted to the consumer's output in the original model, by ridge least squares
        /// towards the weights as they were: [W' | b'] = ([W | b] E[zₒ z_Kᵀ] + λ[W_K | b]) (E[z_K z_Kᵀ] + λI)⁻¹ (algorithms.md
        /// §14); the removed columns are zeroed (surgery then drops them).
        /// </summary>
        public void Refit(OnnxModel model, long[] removed)
        {
            using var scope = NewDisposeScope();
            var cols = Matrix.shape[1];
            var gone = ChannelColumns(removed.Length == 0 ? 0 : removed.Max() + 1).index_select(0, tensor(removed)).flatten();
            var mask = ones(cols + (_bias is null ? 0 : 1), ScalarType.Bool);
            mask.index_fill_(0, gone, false);
            var kept = mask.nonzero().squeeze(1);
            var full = _bias is null ? Matrix : cat([Matrix, model.ToTorch(model.Graph.GetInitializer(_bias.Name)!).to_type(ScalarType.Float64).unsqueeze(1)], 1);
            // Ridge towards the kept weights as they were, not towards zero: a consumer that sees fewer calibration rows
            // than it has inputs (a Gemm, one row per sample) keeps its weights where the data says little.
            var lambda = Lambda * RefitDamping;
            // Each |K|×n or |K|×|K| intermediate (up to 200 MB for a 640-channel 3×3 consumer) is freed as soon as used;
            // λ goes onto the diagonal in place (off it, adding λI's zeros changed nothing).
            Tensor a, b;
            using (var rows = _augmented.Value.index_select(0, kept))
            {
                a = rows.index_select(1, kept);
            }

            a.diagonal().add_(lambda);
            using (var rows = _cross.Value.index_select(0, kept))
            {
                b = rows.mm(full.t()).add(full.index_select(1, kept).t().mul(lambda));
            }

            var solved = linalg.solve(a, b).t(); // [out, |K|]
            a.Dispose();
            var updated = zeros_like(full);
            updated.index_copy_(1, kept, solved);
            var fitted = updated.narrow(1, 0, cols).to_type(ScalarType.Float32);
            var weight = _transposed?.FromMatrix(fitted) ?? LayerMatrix.FromMatrix(fitted, _use);
            // By name: the model may be a copy of the one measured (the allocation's cuts).
            model.ReplaceData(model.Graph.GetInitializer(_use.Weight.Name)!, weight.ToOnnx(_use.Weight.Name));
            if (_bias is not null)
            {
                model.ReplaceData(model.Graph.GetInitializer(_bias.Name)!, updated.select(1, cols).to_type(ScalarType.Float32).contiguous().ToOnnx(_bias.Name));
            }
        }

        public void Dispose()
        {
            Matrix.Dispose();
            _augmented.Dispose();
            _cross.Dispose();
        }
    }
}
