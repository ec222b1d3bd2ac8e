using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Compress.Spec.Methods;

namespace Compress.Spec
{
    /// <summary>
    /// Turns spec JSON into a <see cref="CompressionSpec"/>, refusing unknown keys, wrong types, out-of-range values,
    /// unknown methods and missing data files — each with the file, line and column of the offending value.
    /// The key tables here are the single source of the spec's shape (the JSON Schema is checked against them); the
    /// steps' keys, methods and options come from <see cref="MethodCatalog"/>, and each step kind reads its own keys.
    /// </summary>
    public static class SpecReader
    {
        public static readonly IReadOnlyDictionary<string, string[]> Keys = KeyTable();

        public static readonly IReadOnlyDictionary<string, string[]> Choices = ChoiceTable();

        private static Dictionary<string, string[]> KeyTable()
        {
            var keys = new Dictionary<string, string[]>
            {
                ["spec"] = new[] { "$schema", "data", "steps", "constraints", "target", "module" },
                ["module"] = new[] { "type", "assembly", "arguments" },
                ["data"] = new[] { "calibration", "evaluation", "training" },
                ["data.source"] = new[] { "path", "samples", "seed", "labels", "metric", "output" },
                ["data.synthetic"] = new[] { "synthesize", "samples", "seed", "iterations" },
                ["step"] = MethodCatalog.Kinds.Select(k => k.Name).ToArray(),
                ["prune.schedule"] = new[] { "steps" },
                ["constraints"] = new[] { "maxAccuracyDrop", "minAgreement", "minCosine", "minSqnrDb", "maxLatencyRatio" },
                ["target"] = new[] { "runtime", "executionProvider" },
            };
            foreach (var kind in MethodCatalog.Kinds)
            {
                keys[kind.Name] = kind.Keys.ToArray();
            }

            return keys;
        }

        private static Dictionary<string, string[]> ChoiceTable()
        {
            var choices = new Dictionary<string, string[]>
            {
                ["data.metric"] = new[] { "accuracy", "agreement", "cosine", "sqnr" },
                ["syntheticData.synthesize"] = SyntheticData.Methods,
                ["target.runtime"] = new[] { "onnxruntime" },
                ["target.executionProvider"] = new[] { "cpu" },
            };
            foreach (var kind in MethodCatalog.Kinds)
            {
                choices[$"{kind.Name}.method"] = kind.Methods.SelectMany(m => m.Names).ToArray();
                foreach (var choice in kind.Choices)
                {
                    choices[$"{kind.Name}.{choice.Key}"] = choice.Value;
                }
            }

            return choices;
        }

        /// <summary>The shared-value bits an allocation chooses from for a pack step (unless its own 'bits' says).</summary>
        public static readonly int[] PackAllocationBits = { 2, 3, 4, 5, 6 };

        /// <summary>The bits an allocation may give a layer of <paramref name="step"/>: what its scheme stores.</summary>
        public static int[] AllocationBits(QuantizeStep step) =>
            step.Weights == "fp16" ? new[] { 16, 32 }
            : step.Scheme == QuantizeSchemes.WeightOnly ? new[] { 4, 8 }
            : new[] { 8, 32 };

        public static CompressionSpec ReadFile(string path)
        {
            string text;
            try
            {
                text = File.ReadAllText(path);
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                throw new SpecException(SpecCodes.Unreadable, $"cannot read the spec: {e.Message}", path, 1, 1);
            }

            return Read(text, path, checkFiles: true);
        }

        /// <param name="checkFiles">Whether data paths must exist (the engine checks; an editor may not).</param>
        public static CompressionSpec Read(string text, string file, bool checkFiles)
        {
            var root = JsonParser.Parse(text, file);
            var reader = new Reader(file, checkFiles);
            return reader.Spec(root);
        }

        private sealed class Reader : SpecValues
        {
            private readonly bool _checkFiles;

            public Reader(string file, bool checkFiles)
                : base(file)
            {
                _checkFiles = checkFiles;
            }

            public CompressionSpec Spec(JsonNode root)
            {
                Object(root, "spec", "the spec");
                var spec = new CompressionSpec { File = File };
                if (root["data"] is JsonNode data)
                {
                    Object(data, "data", "'data'");
                    spec.Calibration = data["calibration"] is JsonNode c ? Calibration(c, spec) : null;
                    spec.Evaluation = data["evaluation"] is JsonNode e ? Source(e, "evaluation") : null;
                    spec.Training = data["training"] is JsonNode t ? Source(t, "training") : null;
                }

                var steps = root["steps"] ?? throw Missing(root, "steps", "the spec");
                Type(steps, JsonKind.Array, "'steps'");
                if (steps.Items.Count == 0)
                {
                    throw Error(SpecCodes.OutOfRange, steps, $"'steps' is empty: name at least one {string.Join(" or ", MethodCatalog.Kinds)} step");
                }

                foreach (var item in steps.Items)
                {
                    spec.Steps.Add(Step(item));
                }

                if (root["constraints"] is JsonNode constraints)
                {
                    Object(constraints, "constraints", "'constraints'");
                    spec.Constraints = new SpecConstraints
                    {
                        MaxAccuracyDrop = OptionalNumber(constraints, "maxAccuracyDrop", 0, 1),
                        MinAgreement = OptionalNumber(constraints, "minAgreement", 0, 1),
                        MinCosine = OptionalNumber(constraints, "minCosine", -1, 1),
                        MinSqnrDb = OptionalNumber(constraints, "minSqnrDb", -100, 200),
                        MaxLatencyRatio = OptionalNumber(constraints, "maxLatencyRatio", 0.05, 100),
                    };
                    foreach (var member in constraints.Members)
                    {
                        spec.Constraints.Positions[member.Key] = (member.Line, member.Column);
                    }

                    if (spec.Constraints.MaxLatencyRatio != null && spec.Evaluation == null && spec.Calibration == null)
                    {
                        throw Error(SpecCodes.Inconsistent, constraints["maxLatencyRatio"]!,
                            "'maxLatencyRatio' needs data to time the models on: set data.evaluation or data.calibration");
                    }
                    if (spec.Constraints.MaxAccuracyDrop != null && spec.Evaluation?.Labels == null)
                    {
                        throw Error(SpecCodes.Inconsistent, constraints["maxAccuracyDrop"]!,
                            "'maxAccuracyDrop' needs labelled evaluation data: set data.evaluation.path and data.evaluation.labels");
                    }
                }

                if (root["target"] is JsonNode target)
                {
                    Object(target, "target", "'target'");
                    spec.Target = new SpecTarget
                    {
                        Runtime = Choice(target, "runtime", "target.runtime") ?? "onnxruntime",
                        ExecutionProvider = Choice(target, "executionProvider", "target.executionProvider") ?? "cpu",
                    };
                }

                foreach (var step in spec.Steps.Where(s => MethodCatalog.Of(s).Scheme(s.Scheme)?.Data > MethodData.None))
                {
                    if (spec.Calibration == null && spec.SyntheticCalibration == null)
                    {
                        throw new SpecException(SpecCodes.Inconsistent,
                            $"{MethodCatalog.Of(step).Kind.Describe(step)} needs calibration data: set data.calibration.path{NoDataHint}", File, step.Line, step.Column);
                    }
                }

                foreach (var step in spec.Steps)
                {
                    var needs = MethodCatalog.Of(step).Data;
                    if (step is FinetuneStep && spec.Calibration == null && spec.Training == null)
                    {
                        throw new SpecException(SpecCodes.Inconsistent,
                            "'finetune' distills the original model on inputs: set data.training.path (unlabeled inputs) or data.calibration.path", File, step.Line, step.Column);
                    }

                    if (needs != MethodData.None && spec.Calibration == null && spec.SyntheticCalibration == null && !(step is FinetuneStep))
                    {
                        throw new SpecException(SpecCodes.Inconsistent,
                            $"'{step.Method}' needs calibration data ({(needs == MethodData.Gradients ? "activations and gradients" : "activations")}): set data.calibration.path{NoDataHint}", File, step.Line, step.Column);
                    }
                }

                if (spec.Steps.OfType<PackStep>().FirstOrDefault() is { } pack && spec.Steps[spec.Steps.Count - 1] != pack)
                {
                    throw new SpecException(SpecCodes.Inconsistent, "'pack' turns the weights into the shipped artifact: it must be the last step", File, pack.Line, pack.Column);
                }

                CheckFinetunes(spec);
                if (spec.Training != null && !spec.Steps.Any(s => s is FinetuneStep))
                {
                    throw new SpecException(SpecCodes.Inconsistent, "data.training holds inputs for a 'finetune' step to distill on, and the spec has none: add one or remove data.training",
                        File, spec.Training.Line, spec.Training.Column);
                }

                var auto = spec.Steps.OfType<PruneStep>().Where(p => p.Auto).ToList();
                if (auto.Count > 1)
                {
                    throw new SpecException(SpecCodes.Inconsistent, "only one prune step can have 'sparsity': 'auto'", File, auto[1].Line, auto[1].Column);
                }

                var limits = spec.Constraints;
                if (auto.Count == 1 && limits.MaxAccuracyDrop == null && limits.MinAgreement == null && limits.MinCosine == null && limits.MinSqnrDb == null)
                {
                    throw new SpecException(SpecCodes.Inconsistent,
                        "'sparsity': 'auto' searches the highest sparsity meeting a constraint: set constraints.maxAccuracyDrop, minAgreement, minCosine or minSqnrDb", File, auto[0].Line, auto[0].Column);
                }

                if (auto.Count == 1 && spec.Evaluation == null && spec.Calibration == null)
                {
                    throw new SpecException(SpecCodes.Inconsistent, "'sparsity': 'auto' needs evaluation data: set data.evaluation.path", File, auto[0].Line, auto[0].Column);
                }

                CheckAllocations(spec);
                CheckSynthetic(spec, root);
                spec.Module = root["module"] is JsonNode module ? Module(module) : null;
                return spec;
            }

            /// <summary>
            /// <c>module</c>: the TorchSharp module type (assembly-qualified, or with <c>assembly</c> a file relative to the
            /// spec), and its constructor's arguments (numbers, strings, booleans).
            /// </summary>
            private ModuleSpec Module(JsonNode node)
            {
                Object(node, "module", "'module'");
                var typeNode = node["type"] ?? throw Missing(node, "type", "'module'");
                var module = new ModuleSpec { Type = String(typeNode, "'type'").Trim(), Line = node.Line, Column = node.Column };
                if (module.TypeName.Length == 0 || module.AssemblyName?.Length == 0)
                {
                    throw Error(SpecCodes.OutOfRange, typeNode, "'type' names the module class: 'Namespace.Type, AssemblyName'");
                }

                if (node["assembly"] is JsonNode assembly)
                {
                    var relative = String(assembly, "'assembly'");
                    var full = System.IO.Path.GetFullPath(System.IO.Path.Combine(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(File)) ?? ".", relative));
                    if (_checkFiles && !System.IO.File.Exists(full))
                    {
                        throw Error(SpecCodes.DataFileMissing, assembly, $"assembly '{relative}' not found (looked for {full})");
                    }

                    module.AssemblyPath = full;
                }
                else if (module.AssemblyName == null)
                {
                    throw Error(SpecCodes.Inconsistent, typeNode,
                        $"'{module.Type}' names no assembly: write 'Namespace.Type, AssemblyName' (found among the project's references), or give the file in 'assembly'");
                }

                if (node["arguments"] is JsonNode arguments)
                {
                    Type(arguments, JsonKind.Array, "'arguments'");
                    foreach (var item in arguments.Items)
                    {
                        module.Arguments.Add(item.Kind switch
                        {
                            JsonKind.Number => item.Number,
                            JsonKind.String => item.Text!,
                            JsonKind.Boolean => item.Boolean,
                            _ => throw Error(SpecCodes.WrongType, item, $"a constructor argument is a number, a string or a boolean, not {JsonNode.Describe(item.Kind)}"),
                        });
                    }
                }

                return module;
            }

            /// <summary>What the data-need errors add: the data-free way, and what it takes.</summary>
            private const string NoDataHint =
                ", or \"synthesize\": \"batchnorm\" in data.calibration to synthesise inputs from the model's BatchNormalization statistics (the model must have BatchNormalization layers)";

            /// <summary>
            /// <c>data.calibration</c>: a data file (<see cref="DataSource"/>), or with <c>synthesize</c> inputs made from the
            /// model (<see cref="CompressionSpec.SyntheticCalibration"/>, and null here).
            /// </summary>
            private DataSource? Calibration(JsonNode node, CompressionSpec spec)
            {
                if (node.Kind != JsonKind.Object || node["synthesize"] == null)
                {
                    return Source(node, "calibration");
                }

                if (node["path"] != null)
                {
                    throw Error(SpecCodes.Inconsistent, node["path"]!, "data.calibration names a data file or 'synthesize', not both: synthesised inputs take no 'path'");
                }

                Object(node, "data.synthetic", "'data.calibration' with 'synthesize'");
                spec.SyntheticCalibration = new SyntheticData
                {
                    Method = Choice(node, "synthesize", "syntheticData.synthesize")!,
                    Samples = (int)(OptionalNumber(node, "samples", 1, 65536, integer: true) ?? 64),
                    Seed = (int)(OptionalNumber(node, "seed", 0, int.MaxValue, integer: true) ?? 0),
                    Iterations = (int)(OptionalNumber(node, "iterations", 1, 100000, integer: true) ?? 100),
                    Line = node.Line,
                    Column = node.Column,
                };
                return null;
            }

            /// <summary>
            /// Synthesised calibration inputs never judge the result: a fidelity constraint needs real evaluation data
            /// (<c>maxAccuracyDrop</c> already needs labelled evaluation data, <c>'sparsity': 'auto'</c> evaluation data).
            /// </summary>
            private void CheckSynthetic(CompressionSpec spec, JsonNode root)
            {
                if (spec.SyntheticCalibration == null || spec.Evaluation != null || !(root["constraints"] is JsonNode constraints))
                {
                    return;
                }

                foreach (var key in new[] { "minAgreement", "minCosine", "minSqnrDb" })
                {
                    if (constraints[key] is JsonNode limit)
                    {
                        throw Error(SpecCodes.Inconsistent, limit,
                            $"'{key}' is checked on real data, and synthesised calibration inputs never judge the result: set data.evaluation.path, or leave the constraint out");
                    }
                }
            }

            /// <summary>
            /// A <c>finetune</c> step recovers what the steps before it lost, so one comes first; it trains float or int8/int4
            /// weights, not fp16 ones. A gradual prune (<c>schedule</c>) is followed by the finetune step it alternates with.
            /// </summary>
            private void CheckFinetunes(CompressionSpec spec)
            {
                for (var i = 0; i < spec.Steps.Count; i++)
                {
                    var step = spec.Steps[i];
                    if (step is FinetuneStep finetune)
                    {
                        var before = spec.Steps.Take(i).ToList();
                        if (!before.Any(s => s is PruneStep || s is QuantizeStep || s is FactorizeStep))
                        {
                            throw new SpecException(SpecCodes.Inconsistent,
                                "'finetune' recovers the accuracy the steps before it lost: put it after a prune, quantize or factorize step", File, finetune.Line, finetune.Column);
                        }

                        if (before.OfType<QuantizeStep>().FirstOrDefault(q => q.Weights == "fp16") is QuantizeStep fp16)
                        {
                            throw new SpecException(SpecCodes.Inconsistent,
                                $"'finetune' trains float, int8 and int4 weights, not the fp16 ones of the quantize step at line {fp16.Line}: put 'finetune' before that step", File, finetune.Line, finetune.Column);
                        }
                    }

                    if (step is QuantizeStep { Form: "float" or "int8" } unpacked && i + 1 < spec.Steps.Count)
                    {
                        throw new SpecException(SpecCodes.Inconsistent,
                            $"'form': '{unpacked.Form}' leaves the weights as ops ONNX Runtime folds at load, which later steps cannot read: make this quantize step the last, or use 'form': 'kernel'", File, unpacked.Line, unpacked.Column);
                    }

                    if (step is PruneStep prune && prune.ScheduleSteps > 0 && !(i + 1 < spec.Steps.Count && spec.Steps[i + 1] is FinetuneStep))
                    {
                        throw new SpecException(SpecCodes.Inconsistent,
                            "a gradual 'schedule' alternates pruning with distillation: put a 'finetune' step right after this prune step", File, prune.Line, prune.Column);
                    }
                }
            }

            /// <summary>
            /// Each <c>allocate</c> step allocates for the prune and quantize steps after it (up to the next allocate step):
            /// at most one of each and at least one; a prune step it chooses sparsities for is unstructured, by a method with
            /// a per-layer rule (obs, wanda, magnitude); the bits it may give fit the quantize step's scheme; without a size
            /// budget it searches the smallest artifact meeting a constraint, so one must be set.
            /// </summary>
            private void CheckAllocations(CompressionSpec spec)
            {
                for (var i = 0; i < spec.Steps.Count; i++)
                {
                    if (!(spec.Steps[i] is AllocateStep allocate))
                    {
                        continue;
                    }

                    var covered = spec.Covered(allocate);
                    SpecException At(SpecStep step, string message) => new SpecException(SpecCodes.Inconsistent, message, File, step.Line, step.Column);
                    if (covered.FirstOrDefault() is FactorizeStep factorize)
                    {
                        CheckRankAllocation(spec, allocate, factorize);
                        continue;
                    }

                    var prunes = covered.OfType<PruneStep>().ToList();
                    var quantizes = covered.OfType<QuantizeStep>().ToList();
                    var packs = covered.OfType<PackStep>().ToList();
                    if (quantizes.Count > 0 && packs.Count > 0)
                    {
                        throw At(packs[0], "one 'allocate' step chooses the bits of a quantize step or of a pack step, not both; add another 'allocate' step before this one or drop one of them");
                    }

                    if (packs.Count > 0 && allocate.Bits.FirstOrDefault(b => b > 8) is var wrongPack && wrongPack != 0)
                    {
                        throw At(allocate, $"bits {wrongPack} cannot be stored by the pack step after it: it shares 2 to 8 bits of values");
                    }

                    if (prunes.Count + quantizes.Count + packs.Count == 0)
                    {
                        throw At(allocate, "'allocate' chooses per-layer sparsity and bits for the prune, quantize and pack steps after it, or the ranks of a factorize step right after it: add one after it");
                    }

                    if (prunes.Count > 1 || quantizes.Count > 1)
                    {
                        throw At((SpecStep?)prunes.Skip(1).FirstOrDefault() ?? quantizes[1], "one 'allocate' step allocates for one prune step and one quantize step; add another 'allocate' step before this one");
                    }

                    var compute = allocate.Macs != null ? "macs" : allocate.Latency != null ? "latency" : null;
                    var channels = prunes.FirstOrDefault() is PruneStep { Channel: true } channel ? channel : null;
                    if (compute != null && channels == null)
                    {
                        throw At(allocate, $"a '{compute}' budget is met by removing whole channels: the prune step after it needs \"pattern\": \"channel\" " +
                            "(unstructured or N:M zeros leave the dense kernels' work as it is), or a factorize step right after the 'allocate' step");
                    }

                    if (channels != null)
                    {
                        if (allocate.Size != null || allocate.Bytes != null)
                        {
                            throw At(allocate, "the channels of a \"pattern\": \"channel\" prune step are allocated under a compute budget: give 'macs' or 'latency' instead of 'size'/'bytes'");
                        }

                        if (MethodCatalog.Of(channels).Name != ObsMethod.Name)
                        {
                            throw At(channels, $"'allocate' weighs a channel choice by its OBS cost on the calibration data: use method 'obs', not '{channels.Method}'");
                        }

                        if (allocate.Bits.Count > 0)
                        {
                            throw At(allocate, "a channel allocation chooses channel counts, not bits: drop 'bits' (a quantize step after it keeps its own)");
                        }

                        if (compute != null && allocate.Rounds > 1)
                        {
                            throw At(allocate, $"a channel allocation under a '{compute}' budget measures each choice's error at the model's output, so every round would choose the same counts: leave out 'rounds'");
                        }
                    }

                    if (prunes.FirstOrDefault() is PruneStep prune)
                    {
                        if (!new[] { ObsMethod.Name, WandaMethod.Name, MagnitudeMethod.Name }.Contains(MethodCatalog.Of(prune).Name))
                        {
                            throw At(prune, $"'allocate' chooses per-layer sparsity for 'obs', 'wanda' or 'magnitude', not '{prune.Method}' (which spreads its sparsity by its own global scores)");
                        }

                        if (prune.Auto)
                        {
                            throw At(prune, "'sparsity': 'auto' and an 'allocate' step both choose the sparsity: keep one");
                        }

                        if (!prune.AllocatedSparsity)
                        {
                            throw At(prune, "the 'allocate' step before it chooses each layer's sparsity: leave out 'sparsity'");
                        }
                    }

                    if (quantizes.FirstOrDefault() is QuantizeStep quantize && allocate.Bits.Count > 0)
                    {
                        var offered = AllocationBits(quantize);
                        if (allocate.Bits.FirstOrDefault(b => !offered.Contains(b)) is var wrong && wrong != 0)
                        {
                            throw At(allocate, $"bits {wrong} cannot be stored by the quantize step after it ({quantize.Scheme} {quantize.Weights}): it offers {string.Join(" and ", offered)}");
                        }
                    }

                    CheckBudget(spec, allocate);
                }
            }

            private void CheckBudget(CompressionSpec spec, AllocateStep allocate)
            {
                var limits = spec.Constraints;
                if (!allocate.HasBudget
                    && limits.MaxAccuracyDrop == null && limits.MinAgreement == null && limits.MinCosine == null && limits.MinSqnrDb == null)
                {
                    throw new SpecException(SpecCodes.Inconsistent,
                        "'allocate' needs a budget: 'size' (a fraction of the source model), 'bytes', 'macs' (with a channel prune or a factorize step) or 'latency' (with a channel prune step), or a constraint (constraints.maxAccuracyDrop, minAgreement, minCosine or minSqnrDb) to find the smallest artifact meeting it",
                        File, allocate.Line, allocate.Column);
                }
            }

            /// <summary>An <c>allocate</c> step right before a <c>factorize</c> step chooses its ranks under a size or multiply-add budget.</summary>
            private void CheckRankAllocation(CompressionSpec spec, AllocateStep allocate, FactorizeStep factorize)
            {
                if (allocate.Latency != null)
                {
                    throw new SpecException(SpecCodes.Inconsistent,
                        "the ranks of a factorize step are allocated under 'size', 'bytes' or 'macs'; for a latency limit give constraints.maxLatencyRatio (the factorize step then undoes the splits measured slower)",
                        File, allocate.Line, allocate.Column);
                }

                if (allocate.Bits.Count > 0)
                {
                    throw new SpecException(SpecCodes.Inconsistent, "an allocation before a factorize step chooses ranks, not bits: drop 'bits'", File, allocate.Line, allocate.Column);
                }

                if (factorize.ParameterRatio != null)
                {
                    throw new SpecException(SpecCodes.Inconsistent, "the 'allocate' step before it chooses each layer's rank: leave out 'parameterRatio'", File, factorize.Line, factorize.Column);
                }

                CheckBudget(spec, allocate);
            }

            private DataSource Source(JsonNode node, string role)
            {
                Object(node, "data.source", $"'data.{role}'");
                var pathNode = node["path"] ?? throw (role == "calibration"
                    ? Error(SpecCodes.MissingKey, node, "'data.calibration' needs 'path' (a data file), or 'synthesize': 'batchnorm' for inputs synthesised from the model's BatchNormalization statistics")
                    : Missing(node, "path", $"'data.{role}'"));
                var relative = String(pathNode, "'path'");
                var baseDirectory = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(File)) ?? ".";
                var full = System.IO.Path.GetFullPath(System.IO.Path.Combine(baseDirectory, relative));
                if (_checkFiles && !System.IO.File.Exists(full))
                {
                    throw Error(SpecCodes.DataFileMissing, pathNode, $"data file '{relative}' not found (looked for {full})");
                }

                var source = new DataSource
                {
                    Path = full,
                    Samples = (int?)OptionalNumber(node, "samples", 1, int.MaxValue, integer: true),
                    Seed = (int)(OptionalNumber(node, "seed", 0, int.MaxValue, integer: true) ?? 0),
                    Labels = node["labels"] is JsonNode labels ? String(labels, "'labels'") : null,
                    Line = node.Line,
                    Column = node.Column,
                };
                source.Metric = Choice(node, "metric", "data.metric");
                source.Output = node["output"] is JsonNode output ? String(output, "'output'") : null;
                if (source.Metric == "accuracy" && source.Labels == null)
                {
                    throw Error(SpecCodes.Inconsistent, node["metric"]!, "metric 'accuracy' needs 'labels': the name of the labels array in the data file");
                }

                if (role != "evaluation" && node["metric"] != null)
                {
                    throw Error(SpecCodes.Inconsistent, node["metric"]!, $"{role} data takes no metric; it belongs to data.evaluation (calibration 'labels' are used by the gradient methods' loss)");
                }

                if (role != "evaluation" && node["output"] != null)
                {
                    throw Error(SpecCodes.Inconsistent, node["output"]!, $"{role} data takes no output; it belongs to data.evaluation (the output that constraints judge)");
                }

                return source;
            }

            private SpecStep Step(JsonNode node)
            {
                Object(node, "step", "a step");
                if (node.Members.Count != 1)
                {
                    throw Error(SpecCodes.WrongType, node, $"a step is an object with exactly one key, {StepKind.List(MethodCatalog.Kinds.Select(k => k.Name), "or")}");
                }

                var member = node.Members[0];
                var body = member.Value;
                Object(body, member.Key, $"'{member.Key}'");
                var kind = MethodCatalog.Kind(member.Key)!;
                var (method, written) = Method(body, kind);
                var step = kind.Read(this, body, method, written);
                Allocating |= step is AllocateStep;
                step.MethodDefaulted = body["method"] == null;
                step.Line = member.Line;
                step.Column = member.Column;
                StringList(body, "include", step.Include);
                StringList(body, "exclude", step.Exclude);
                StringList(body, "opTypes", step.OpTypes);
                if (step.OpTypes.Count == 0)
                {
                    step.OpTypes.AddRange(method.Scheme(step.Scheme)?.OpTypes ?? method.OpTypes);
                    step.DefaultOpTypes = true;
                }

                return step;
            }

            /// <summary>The step's method (its name or an alias), or the kind's default; CMP0105 for a name no method has.</summary>
            private (MethodDescriptor Method, string Written) Method(JsonNode node, StepKind kind)
            {
                var value = node["method"];
                if (value == null)
                {
                    return (MethodCatalog.Find(kind, kind.DefaultMethod)!, kind.DefaultMethod);
                }

                var text = String(value, "'method'");
                var method = MethodCatalog.Find(kind, text)
                    ?? throw Error(SpecCodes.UnknownMethod, value, $"unknown method '{text}' (available: {string.Join(", ", Choices[$"{kind.Name}.method"])})");
                return (method, text);
            }
        }
    }
}
