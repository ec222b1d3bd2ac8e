using System;
using System.Collections.Generic;
using System.Linq;

namespace Compress.Spec.Methods
{
    /// <summary>
    /// The one registration of compression methods. The spec reader's choices, option keys and data checks, the JSON
    /// Schema, the engine's passes, the TorchSharp/TorchScript compressors' refusals and the analyzers all read this
    /// list; a method missing here does not exist, a method here without a pass fails a test.
    /// </summary>
    public static class MethodCatalog
    {
        /// <summary>Every method, in the order the spec's choices list them.</summary>
        public static readonly IReadOnlyList<MethodDescriptor> All = new[]
        {
            MagnitudeMethod.Descriptor,
            ObsMethod.Descriptor,
            WoodFisherMethod.Descriptor,
            SnipMethod.Descriptor,
            WandaMethod.Descriptor,
            RtnMethod.Descriptor,
            GptqMethod.Descriptor,
            SvdMethod.Descriptor,
            DpMethod.Descriptor,
            AnnealMethod.Descriptor,
            KmeansMethod.Descriptor,
            DistillMethod.Descriptor,
        };

        /// <summary>The step kinds the methods belong to, in catalog order.</summary>
        public static readonly IReadOnlyList<StepKind> Kinds = All.Select(m => m.Kind).Distinct().ToArray();

        public static IReadOnlyList<MethodDescriptor> Of(StepKind kind) => All.Where(m => m.Kind == kind).ToArray();

        public static StepKind? Kind(string name) => Kinds.FirstOrDefault(k => k.Name == name);

        /// <summary>The method of <paramref name="kind"/> with this name or alias, or null.</summary>
        public static MethodDescriptor? Find(StepKind kind, string name) =>
            All.FirstOrDefault(m => m.Kind == kind && (m.Name == name || m.Aliases.Contains(name)));

        /// <summary>The method a step names (the reader has refused unknown names).</summary>
        public static MethodDescriptor Of(SpecStep step) =>
            (Kind(step.Kind) is { } kind ? Find(kind, step.Method) : null)
            ?? throw new ArgumentException($"no method '{step.Method}' for '{step.Kind}' steps", nameof(step));
    }
}
