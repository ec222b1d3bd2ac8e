using System.Collections.Generic;
using System.Linq;

namespace Compress.Spec.Methods
{
    /// <summary>
    /// <c>allocate</c>: chooses per layer the sparsity of the <c>prune</c> step and the bits of the <c>quantize</c> step
    /// that follow it, from the per-layer error database, under a size budget (<c>size</c>, a fraction of the source
    /// model's bytes, or <c>bytes</c>) — or, for a <c>"pattern": "channel"</c> prune step, each dependency group's channel
    /// count under a compute budget (<c>macs</c> or <c>latency</c>, fractions of the source's) — or, with no budget, the
    /// smallest artifact meeting the spec's constraints — solved by its method (<c>dp</c> or <c>anneal</c>), with up to
    /// <c>rounds</c> compress-and-evaluate rounds.
    /// </summary>
    internal sealed class AllocateKind : StepKind
    {
        /// <summary>The bits a layer may be given: int4/int8 (weight-only), int8 or float (static, dynamic), fp16 or float, 2–8 shared-value bits (pack).</summary>
        public static readonly int[] AllBits = { 2, 3, 4, 5, 6, 7, 8, 16, 32 };

        public AllocateKind()
            : base("allocate", "allocation", DpMethod.Name,
                new[] { "method", "size", "bytes", "macs", "latency", "rounds", "bits", "sensitivity" },
                new Dictionary<string, string[]> { ["sensitivity"] = new[] { "hessian", "none" } })
        {
        }

        protected override bool Selects => false;

        internal override SpecStep Read(SpecValues values, JsonNode node, MethodDescriptor method, string written)
        {
            var step = new AllocateStep { Method = written };
            RefuseOptionsNotTaken(values, node, method, written);
            ReadOptions(values, node, method, step);
            step.Size = values.OptionalNumber(node, "size", 0.001, 1);
            step.Bytes = (long?)values.OptionalNumber(node, "bytes", 1, 1e15, integer: true);
            if (step.Size != null && step.Bytes != null)
            {
                throw values.Error(SpecCodes.Inconsistent, node["bytes"]!, "give the budget as 'size' (a fraction of the source model) or as 'bytes', not both");
            }

            step.Macs = values.OptionalNumber(node, "macs", 0.001, 1);
            step.Latency = values.OptionalNumber(node, "latency", 0.01, 1);
            var budgets = new[] { "size", "bytes", "macs", "latency" }.Where(k => node[k] != null).ToList();
            if (budgets.Count > 1)
            {
                throw values.Error(SpecCodes.Inconsistent, node[budgets[1]]!,
                    $"give one budget: 'size' or 'bytes' (the artifact's bytes), 'macs' (its multiply-adds per sample) or 'latency' (its measured batch-1 time), not '{budgets[0]}' and '{budgets[1]}'");
            }

            step.Rounds = (int?)values.OptionalNumber(node, "rounds", 1, 10, integer: true);
            step.Sensitivity = values.Choice(node, "sensitivity", "allocate.sensitivity") ?? "hessian";
            if (node["bits"] is JsonNode bits)
            {
                values.Type(bits, JsonKind.Array, "'bits'");
                foreach (var item in bits.Items)
                {
                    var b = (int)values.Number(item, "an entry of 'bits'", 2, 32, integer: true);
                    if (!AllBits.Contains(b))
                    {
                        throw values.Error(SpecCodes.OutOfRange, item, $"bits {b} is not one of {string.Join(", ", AllBits)}");
                    }

                    if (!step.Bits.Contains(b))
                    {
                        step.Bits.Add(b);
                    }
                }

                if (step.Bits.Count == 0)
                {
                    throw values.Error(SpecCodes.OutOfRange, bits, "'bits' is empty: name the bit-widths a layer may take, e.g. [4, 8]");
                }
            }

            return step;
        }
    }
}
