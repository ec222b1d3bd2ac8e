using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;

namespace Compress.Spec
{
    /// <summary>
    /// Turns spec JSON into a <see cref="CompressionSpec"/>, refusing unknown keys, wrong types, out-of-range values,
    /// unknown methods and missing data files — each with the file, line and column of the offending value.
    /// The key tables here are the single source of the spec's shape (the JSON Schema is checked against them).
    /// </summary>
    public static class SpecReader
    {
        public static readonly IReadOnlyDictionary<string, string[]> Keys = new Dictionary<string, string[]>
        {
            ["spec"] = new[] { "$schema", "data", "steps", "constraints", "target" },
            ["data"] = new[] { "calibration", "evaluation" },
            ["data.source"] = new[] { "path", "samples", "seed", "labels", "metric", "output" },
            ["step"] = new[] { "prune", "quantize" },
            ["prune"] = new[] { "method", "sparsity", "scope", "pattern", "maxLayerSparsity", "blockSize", "damping", "steps", "include", "exclude", "opTypes" },
            ["quantize"] = new[] { "method", "weights", "activations", "granularity", "calibration", "percentile", "minActivationSqnrDb", "biasCorrection", "blockSize", "symmetric", "actOrder", "damping", "include", "exclude", "opTypes" },
            ["constraints"] = new[] { "maxAccuracyDrop", "minAgreement", "minCosine", "minSqnrDb" },
            ["target"] = new[] { "runtime", "executionProvider" },
        };

        public static readonly IReadOnlyDictionary<string, string[]> Choices = new Dictionary<string, string[]>
        {
            ["prune.method"] = new[] { "magnitude", "obs", "sparsegpt", "woodfisher", "snip" },
            ["prune.scope"] = new[] { "global", "layer" },
            ["quantize.method"] = new[] { "rtn", "gptq" },
            ["quantize.weights"] = new[] { "int8", "int4", "fp16" },
            ["quantize.activations"] = new[] { "int8", "uint8", "dynamic", "none" },
            ["quantize.granularity"] = new[] { "channel", "tensor" },
            ["quantize.calibration"] = new[] { "minmax", "percentile", "entropy", "mse" },
            ["data.metric"] = new[] { "accuracy", "agreement", "cosine", "sqnr" },
            ["target.runtime"] = new[] { "onnxruntime" },
            ["target.executionProvider"] = new[] { "cpu" },
        };

        /// <summary>Pruning methods that need calibration data (activations or gradients).</summary>
        public static readonly IReadOnlyList<string> DataAwarePruning = new[] { "obs", "sparsegpt", "woodfisher", "snip" };

        private static readonly string[] DefaultOpTypes = { "Conv", "Gemm", "MatMul" };

        /// <summary>Static QDQ also covers the ops ONNX Runtime runs on int8 between them, so quantized regions connect.</summary>
        private static readonly string[] StaticOpTypes =
        {
            "Conv", "Gemm", "MatMul", "Add", "Mul", "MaxPool", "AveragePool", "GlobalAveragePool", "Concat", "Relu",
            "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze",
        };

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

        private sealed class Reader
        {
            private readonly string _file;
            private readonly bool _checkFiles;

            public Reader(string file, bool checkFiles)
            {
                _file = file;
                _checkFiles = checkFiles;
            }

            public CompressionSpec Spec(JsonNode root)
            {
                Object(root, "spec", "the spec");
                var spec = new CompressionSpec { File = _file };
                if (root["data"] is JsonNode data)
                {
                    Object(data, "data", "'data'");
                    spec.Calibration = data["calibration"] is JsonNode c ? Source(c, "calibration") : null;
                    spec.Evaluation = data["evaluation"] is JsonNode e ? Source(e, "evaluation") : null;
                }

                var steps = root["steps"] ?? throw Missing(root, "steps", "the spec");
                Type(steps, JsonKind.Array, "'steps'");
                if (steps.Items.Count == 0)
                {
                    throw Error(SpecCodes.OutOfRange, steps, "'steps' is empty: name at least one prune or quantize step");
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
                    };
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

                foreach (var step in spec.Steps.OfType<QuantizeStep>().Where(s => s.Scheme == "static"))
                {
                    if (spec.Calibration == null)
                    {
                        throw new SpecException(SpecCodes.Inconsistent,
                            $"static quantization (activations '{step.Activations}') needs calibration data: set data.calibration.path", _file, step.Line, step.Column);
                    }
                }

                foreach (var step in spec.Steps)
                {
                    var method = step is PruneStep p && p.DataAware ? p.Method : step is QuantizeStep q && q.Method == "gptq" ? q.Method : null;
                    if (method != null && spec.Calibration == null)
                    {
                        throw new SpecException(SpecCodes.Inconsistent,
                            $"'{method}' needs calibration data (activations{(method == "obs" || method == "sparsegpt" || method == "gptq" ? "" : " and gradients")}): set data.calibration.path", _file, step.Line, step.Column);
                    }
                }

                var auto = spec.Steps.OfType<PruneStep>().Where(p => p.Auto).ToList();
                if (auto.Count > 1)
                {
                    throw new SpecException(SpecCodes.Inconsistent, "only one prune step can have 'sparsity': 'auto'", _file, auto[1].Line, auto[1].Column);
                }

                var limits = spec.Constraints;
                if (auto.Count == 1 && limits.MaxAccuracyDrop == null && limits.MinAgreement == null && limits.MinCosine == null && limits.MinSqnrDb == null)
                {
                    throw new SpecException(SpecCodes.Inconsistent,
                        "'sparsity': 'auto' searches the highest sparsity meeting a constraint: set constraints.maxAccuracyDrop, minAgreement, minCosine or minSqnrDb", _file, auto[0].Line, auto[0].Column);
                }

                if (auto.Count == 1 && spec.Evaluation == null && spec.Calibration == null)
                {
                    throw new SpecException(SpecCodes.Inconsistent, "'sparsity': 'auto' needs evaluation data: set data.evaluation.path", _file, auto[0].Line, auto[0].Column);
                }

                return spec;
            }

            private DataSource Source(JsonNode node, string role)
            {
                Object(node, "data.source", $"'data.{role}'");
                var pathNode = node["path"] ?? throw Missing(node, "path", $"'data.{role}'");
                var relative = String(pathNode, "'path'");
                var baseDirectory = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(_file)) ?? ".";
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

                if (role == "calibration" && node["metric"] != null)
                {
                    throw Error(SpecCodes.Inconsistent, node["metric"]!, "calibration data takes no metric; it belongs to data.evaluation (calibration 'labels' are used by the gradient methods' loss)");
                }

                if (role == "calibration" && node["output"] != null)
                {
                    throw Error(SpecCodes.Inconsistent, node["output"]!, "calibration data takes no output; it belongs to data.evaluation (the output that constraints judge)");
                }

                return source;
            }

            private SpecStep Step(JsonNode node)
            {
                Object(node, "step", "a step");
                if (node.Members.Count != 1)
                {
                    throw Error(SpecCodes.WrongType, node, "a step is an object with exactly one key, 'prune' or 'quantize'");
                }

                var member = node.Members[0];
                var body = member.Value;
                Object(body, member.Key, $"'{member.Key}'");
                SpecStep step = member.Key == "prune" ? Prune(body) : Quantize(body);
                step.Line = member.Line;
                step.Column = member.Column;
                StringList(body, "include", step.Include);
                StringList(body, "exclude", step.Exclude);
                StringList(body, "opTypes", step.OpTypes);
                if (step.OpTypes.Count == 0)
                {
                    step.OpTypes.AddRange(step is QuantizeStep q
                        ? q.Scheme == "static" ? StaticOpTypes : q.Scheme == "fp16" ? DefaultOpTypes : new[] { "Gemm", "MatMul" }
                        : DefaultOpTypes);
                }

                return step;
            }

            private PruneStep Prune(JsonNode node)
            {
                var step = new PruneStep { Method = Method(node, "prune.method") ?? "magnitude" };
                var sparsity = node["sparsity"] ?? throw Missing(node, "sparsity", "'prune'");
                if (sparsity.Kind == JsonKind.String && sparsity.Text == "auto")
                {
                    step.Auto = true;
                }
                else
                {
                    if (sparsity.Kind == JsonKind.String)
                    {
                        throw Error(SpecCodes.WrongType, sparsity, "'sparsity' must be a number, not a string (the one string it takes is \"auto\")");
                    }

                    step.Sparsity = Number(sparsity, "'sparsity'", 0, 0.999);
                }

                DataAwareOptions(node, step);
                step.Scope = Choice(node, "scope", "prune.scope") ?? "global";
                step.MaxLayerSparsity = OptionalNumber(node, "maxLayerSparsity", 0, 1) ?? 0.98;
                if (node["pattern"] is JsonNode pattern)
                {
                    var text = String(pattern, "'pattern'");
                    if (text != "unstructured")
                    {
                        var parts = text.Split(':');
                        if (parts.Length != 2 || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var n)
                            || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var m) || n < 1 || m < 2 || n >= m || m > 64)
                        {
                            throw Error(SpecCodes.OutOfRange, pattern, $"pattern '{text}' is neither 'unstructured' nor N:M with 1 <= N < M <= 64 (e.g. '2:4')");
                        }

                        step.N = n;
                        step.M = m;
                        if (step.Auto)
                        {
                            throw Error(SpecCodes.Inconsistent, sparsity, $"pattern {n}:{m} fixes the sparsity at {1 - (double)n / m:0.###}; 'auto' searches unstructured sparsity");
                        }

                        if (step.Method == "woodfisher" || step.Method == "snip")
                        {
                            throw Error(SpecCodes.Inconsistent, pattern, $"N:M patterns are pruned by 'magnitude' or 'obs'; '{step.Method}' prunes unstructured");
                        }

                        if (Math.Abs(step.Sparsity - (1 - (double)n / m)) > 1e-9)
                        {
                            throw Error(SpecCodes.Inconsistent, sparsity, $"pattern {n}:{m} keeps {n} of every {m} weights, so 'sparsity' must be {1 - (double)n / m:0.###}");
                        }
                    }
                }

                if (step.MaxLayerSparsity < step.Sparsity && step.Scope == "layer")
                {
                    throw Error(SpecCodes.Inconsistent, node["maxLayerSparsity"]!, "'maxLayerSparsity' is below the layer-wise 'sparsity'");
                }

                if (step.N > 0 && step.Method != "magnitude" && step.BlockSize % step.M != 0)
                {
                    // SparseGPT picks each N:M group inside one block of columns: a group may not straddle two blocks.
                    throw Error(SpecCodes.Inconsistent, node["blockSize"] ?? node, $"'blockSize' {step.BlockSize} must be a multiple of M ({step.M}) for pattern {step.N}:{step.M}");
                }

                return step;
            }

            /// <summary>blockSize, damping and steps: what the data-aware methods take, refused for the others.</summary>
            private void DataAwareOptions(JsonNode node, PruneStep step)
            {
                var dataAware = DataAwarePruning.Contains(step.Method);
                foreach (var key in new[] { "blockSize", "damping" })
                {
                    if (node[key] is JsonNode option && (!dataAware || step.Method == "snip"))
                    {
                        throw Error(SpecCodes.Inconsistent, option, $"'{key}' applies to the 'obs' and 'woodfisher' methods, not '{step.Method}'");
                    }
                }

                if (node["steps"] is JsonNode steps && step.Method != "woodfisher")
                {
                    throw Error(SpecCodes.Inconsistent, steps, $"'steps' (Fisher recomputations) applies to 'woodfisher', not '{step.Method}'");
                }

                var woodfisher = step.Method == "woodfisher";
                step.BlockSize = (int)(OptionalNumber(node, "blockSize", woodfisher ? 8 : 16, woodfisher ? 4096 : 1024, integer: true) ?? (woodfisher ? 64 : 128));
                step.Damping = OptionalNumber(node, "damping", 1e-9, 1) ?? (woodfisher ? 1e-5 : 0.01);
                step.Steps = (int)(OptionalNumber(node, "steps", 1, 32, integer: true) ?? 4);
            }

            private QuantizeStep Quantize(JsonNode node)
            {
                var step = new QuantizeStep
                {
                    Method = Method(node, "quantize.method") ?? "rtn",
                    Weights = Choice(node, "weights", "quantize.weights") ?? "int8",
                    Granularity = Choice(node, "granularity", "quantize.granularity") ?? "channel",
                    Calibration = Choice(node, "calibration", "quantize.calibration") ?? "minmax",
                    Percentile = OptionalNumber(node, "percentile", 90, 100) ?? 99.999,
                    MinActivationSqnrDb = OptionalNumber(node, "minActivationSqnrDb", 0, 100),
                    Symmetric = node["symmetric"] is JsonNode symmetric ? Boolean(symmetric, "'symmetric'") : true,
                    BiasCorrection = node["biasCorrection"] is JsonNode correction && Boolean(correction, "'biasCorrection'"),
                    ActOrder = node["actOrder"] is JsonNode order && Boolean(order, "'actOrder'"),
                    Damping = OptionalNumber(node, "damping", 1e-9, 1) ?? 0.01,
                };
                step.Activations = Choice(node, "activations", "quantize.activations") ?? (step.Weights == "fp16" ? "none" : step.Weights == "int4" ? "none" : "int8");
                if (node["blockSize"] is JsonNode block)
                {
                    var size = (int)Number(block, "'blockSize'", 16, 256, integer: true);
                    if ((size & (size - 1)) != 0)
                    {
                        throw Error(SpecCodes.OutOfRange, block, $"'blockSize' {size} is not a power of two between 16 and 256");
                    }

                    step.BlockSize = size;
                }

                if (step.Weights == "fp16" && node["activations"] != null && step.Activations != "none")
                {
                    throw Error(SpecCodes.Inconsistent, node["activations"]!, "fp16 converts weights and activations together; leave 'activations' out");
                }

                if (step.Weights == "int4" && step.Activations != "none")
                {
                    throw Error(SpecCodes.Inconsistent, node["activations"]!, "int4 weights are weight-only (MatMulNBits): set 'activations' to 'none'");
                }

                if (node["blockSize"] != null && step.Scheme != "weight-only")
                {
                    throw Error(SpecCodes.Inconsistent, node["blockSize"]!, "'blockSize' applies to weight-only quantization ('activations': 'none')");
                }

                if ((node["calibration"] ?? node["percentile"] ?? node["minActivationSqnrDb"] ?? node["biasCorrection"]) is JsonNode calibrationOnly && step.Scheme != "static")
                {
                    throw Error(SpecCodes.Inconsistent, calibrationOnly, "activation calibration applies to static quantization ('activations': 'int8' or 'uint8')");
                }

                if (step.Method == "gptq" && step.Scheme != "weight-only" && step.Scheme != "static")
                {
                    throw Error(SpecCodes.Inconsistent, node["method"]!,
                        $"'gptq' writes int4/int8 weight-only (MatMulNBits, 'activations': 'none') or static int8 (QDQ, 'activations': 'int8'/'uint8'), not {step.Scheme}");
                }

                if ((node["actOrder"] ?? node["damping"]) is JsonNode gptqOnly && step.Method != "gptq")
                {
                    throw Error(SpecCodes.Inconsistent, gptqOnly, "'actOrder' and 'damping' apply to 'method': 'gptq'");
                }

                if (node["percentile"] != null && step.Calibration != "percentile")
                {
                    throw Error(SpecCodes.Inconsistent, node["percentile"]!, "'percentile' applies to 'calibration': 'percentile'");
                }

                return step;
            }

            private string? Method(JsonNode node, string key)
            {
                var value = node["method"];
                if (value == null)
                {
                    return null;
                }

                var text = String(value, "'method'");
                if (!Choices[key].Contains(text))
                {
                    throw Error(SpecCodes.UnknownMethod, value, $"unknown method '{text}' (available: {string.Join(", ", Choices[key])})");
                }

                return text;
            }

            private string? Choice(JsonNode node, string key, string table)
            {
                var value = node[key];
                if (value == null)
                {
                    return null;
                }

                var text = String(value, $"'{key}'");
                var allowed = Choices[table];
                if (!allowed.Contains(text))
                {
                    throw Error(SpecCodes.OutOfRange, value, $"'{key}' is '{text}'; allowed: {string.Join(", ", allowed)}");
                }

                return text;
            }

            private void StringList(JsonNode node, string key, List<string> into)
            {
                if (node[key] is JsonNode list)
                {
                    Type(list, JsonKind.Array, $"'{key}'");
                    foreach (var item in list.Items)
                    {
                        var text = String(item, $"an entry of '{key}'");
                        if (text.Length == 0)
                        {
                            throw Error(SpecCodes.OutOfRange, item, $"an entry of '{key}' is empty");
                        }

                        into.Add(text);
                    }
                }
            }

            private double? OptionalNumber(JsonNode node, string key, double min, double max, bool integer = false) =>
                node[key] is JsonNode value ? Number(value, $"'{key}'", min, max, integer) : (double?)null;

            private double Number(JsonNode node, string what, double min, double max, bool integer = false)
            {
                Type(node, JsonKind.Number, what);
                if (integer && Math.Abs(node.Number - Math.Round(node.Number)) > 0)
                {
                    throw Error(SpecCodes.WrongType, node, $"{what} must be a whole number, not {node.Text}");
                }

                if (node.Number < min || node.Number > max || double.IsNaN(node.Number))
                {
                    throw Error(SpecCodes.OutOfRange, node, $"{what} is {node.Text}; it must be between {min.ToString(CultureInfo.InvariantCulture)} and {max.ToString(CultureInfo.InvariantCulture)}");
                }

                return node.Number;
            }

            private string String(JsonNode node, string what)
            {
                Type(node, JsonKind.String, what);
                return node.Text!;
            }

            private bool Boolean(JsonNode node, string what)
            {
                Type(node, JsonKind.Boolean, what);
                return node.Boolean;
            }

            private void Object(JsonNode node, string table, string what)
            {
                Type(node, JsonKind.Object, what);
                var allowed = Keys[table];
                foreach (var member in node.Members)
                {
                    if (!allowed.Contains(member.Key))
                    {
                        var suggestion = allowed.OrderBy(k => Distance(k, member.Key)).First();
                        var hint = Distance(suggestion, member.Key) <= Math.Max(2, member.Key.Length / 3) ? $"; did you mean '{suggestion}'?" : "";
                        throw new SpecException(SpecCodes.UnknownKey,
                            $"unknown key '{member.Key}' in {what}{hint} (allowed: {string.Join(", ", allowed)})", _file, member.Line, member.Column);
                    }
                }
            }

            private void Type(JsonNode node, JsonKind kind, string what)
            {
                if (node.Kind != kind)
                {
                    throw Error(SpecCodes.WrongType, node, $"{what} must be {JsonNode.Describe(kind)}, not {JsonNode.Describe(node.Kind)}");
                }
            }

            private SpecException Missing(JsonNode node, string key, string what) =>
                Error(SpecCodes.MissingKey, node, $"{what} needs '{key}'");

            private SpecException Error(string code, JsonNode node, string message) =>
                new SpecException(code, message, _file, node.Line, node.Column);

            private static int Distance(string a, string b)
            {
                var d = new int[a.Length + 1, b.Length + 1];
                for (var i = 0; i <= a.Length; i++)
                {
                    d[i, 0] = i;
                }

                for (var j = 0; j <= b.Length; j++)
                {
                    d[0, j] = j;
                }

                for (var i = 1; i <= a.Length; i++)
                {
                    for (var j = 1; j <= b.Length; j++)
                    {
                        var cost = char.ToLowerInvariant(a[i - 1]) == char.ToLowerInvariant(b[j - 1]) ? 0 : 1;
                        d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + cost);
                    }
                }

                return d[a.Length, b.Length];
            }
        }
    }
}
