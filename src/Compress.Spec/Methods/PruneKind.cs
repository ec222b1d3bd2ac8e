using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;

namespace Compress.Spec.Methods
{
    /// <summary><c>prune</c>: a target sparsity (or <c>auto</c>), its scope, pattern and per-layer cap.</summary>
    internal sealed class PruneKind : StepKind
    {
        public PruneKind()
            : base("prune", "pruning", MagnitudeMethod.Name,
                new[] { "method", "sparsity", "scope", "pattern", "maxLayerSparsity", "schedule" },
                new Dictionary<string, string[]> { ["scope"] = new[] { "global", "layer" } })
        {
        }

        internal override SpecStep Read(SpecValues values, JsonNode node, MethodDescriptor method, string written)
        {
            var step = new PruneStep { Method = written };
            var sparsity = node["sparsity"];
            if (sparsity == null && values.Allocating)
            {
                step.AllocatedSparsity = true; // the allocate step before it sets each layer's
            }
            else if (sparsity == null)
            {
                throw values.Missing(node, "sparsity", "'prune'");
            }
            else if (sparsity.Kind == JsonKind.String && sparsity.Text == "auto")
            {
                step.Auto = true;
            }
            else
            {
                if (sparsity.Kind == JsonKind.String)
                {
                    throw values.Error(SpecCodes.WrongType, sparsity, "'sparsity' must be a number, not a string (the one string it takes is \"auto\")");
                }

                step.Sparsity = values.Number(sparsity, "'sparsity'", 0, 0.999);
            }

            RefuseOptionsNotTaken(values, node, method, written);
            ReadOptions(values, node, method, step);
            step.BlockSize = (int)step.Option("blockSize", step.BlockSize);
            step.Damping = step.Option("damping", step.Damping);
            step.Steps = (int)step.Option("steps", step.Steps);
            step.Scope = values.Choice(node, "scope", "prune.scope") ?? "global";
            step.MaxLayerSparsity = values.OptionalNumber(node, "maxLayerSparsity", 0, 1) ?? 0.98;
            if (node["pattern"] is JsonNode pattern)
            {
                var text = values.String(pattern, "'pattern'");
                if (text == "channel")
                {
                    step.Channel = true;
                    if (method.Name != MagnitudeMethod.Name && method.Name != ObsMethod.Name)
                    {
                        throw values.Error(SpecCodes.Inconsistent, pattern,
                            $"pattern 'channel' is pruned by 'magnitude' (data-free) or 'obs' (second order on calibration data), not '{written}'");
                    }
                }
                else if (text != "unstructured")
                {
                    var parts = text.Split(':');
                    if (parts.Length != 2 || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var n)
                        || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var m) || n < 1 || m < 2 || n >= m || m > 64)
                    {
                        throw values.Error(SpecCodes.OutOfRange, pattern, $"pattern '{text}' is neither 'unstructured', 'channel' nor N:M with 1 <= N < M <= 64 (e.g. '2:4')");
                    }

                    step.N = n;
                    step.M = m;
                    if (step.Auto)
                    {
                        throw values.Error(SpecCodes.Inconsistent, sparsity!, $"pattern {n}:{m} fixes the sparsity at {1 - (double)n / m:0.###}; 'auto' searches unstructured sparsity");
                    }

                    if (!method.Patterns)
                    {
                        throw values.Error(SpecCodes.Inconsistent, pattern,
                            $"N:M patterns are pruned by {List(Methods.Where(d => d.Patterns).Select(d => d.Name), "or")}; '{written}' prunes unstructured");
                    }

                    // Under an allocation a given sparsity is refused as such ("leave out 'sparsity'"), not as the wrong one.
                    if (!step.AllocatedSparsity && !values.Allocating && Math.Abs(step.Sparsity - (1 - (double)n / m)) > 1e-9)
                    {
                        throw values.Error(SpecCodes.Inconsistent, sparsity!, $"pattern {n}:{m} keeps {n} of every {m} weights, so 'sparsity' must be {1 - (double)n / m:0.###}");
                    }
                }
            }

            if (node["schedule"] is JsonNode schedule)
            {
                values.Object(schedule, "prune.schedule", "'schedule'");
                var stages = schedule["steps"] ?? throw values.Missing(schedule, "steps", "'schedule'");
                step.ScheduleSteps = (int)values.Number(stages, "'schedule.steps'", 2, 100, integer: true);
                var why = step.Auto ? "'sparsity': 'auto' searches one-shot sparsities"
                    : step.AllocatedSparsity ? "the 'allocate' step before it chooses one-shot per-layer sparsities"
                    : step.Channel ? "pattern 'channel' removes channels once"
                    : step.N > 0 ? $"pattern {step.N}:{step.M} fixes every layer's sparsity"
                    : null;
                if (why != null)
                {
                    throw values.Error(SpecCodes.Inconsistent, schedule, $"a gradual 'schedule' raises the sparsity in stages, but {why}; drop one of them");
                }
            }

            if (step.MaxLayerSparsity < step.Sparsity && step.Scope == "layer")
            {
                throw values.Error(SpecCodes.Inconsistent, node["maxLayerSparsity"]!, "'maxLayerSparsity' is below the layer-wise 'sparsity'");
            }

            if (step.N > 0 && method.Option("blockSize") is not null && step.BlockSize % step.M != 0)
            {
                // SparseGPT picks each N:M group inside one block of columns: a group may not straddle two blocks.
                throw values.Error(SpecCodes.Inconsistent, node["blockSize"] ?? node, $"'blockSize' {step.BlockSize} must be a multiple of M ({step.M}) for pattern {step.N}:{step.M}");
            }

            return step;
        }
    }
}
