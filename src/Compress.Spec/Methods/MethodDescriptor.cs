using System;
using System.Collections.Generic;
using System.Linq;

namespace Compress.Spec.Methods
{
    /// <summary>What a method needs besides the model: nothing, activations of calibration samples, or gradients (which need the samples too).</summary>
    public enum MethodData
    {
        None,
        Activations,
        Gradients,
    }

    /// <summary>The model formats a method (or a quantize scheme) runs on.</summary>
    [Flags]
    public enum ModelFormat
    {
        None = 0,
        Onnx = 1,
        TorchScript = 2,

        /// <summary>A TorchSharp state dict (<c>Module.save</c>): weights without a graph.</summary>
        TorchSharp = 4,
        All = Onnx | TorchScript | TorchSharp,
    }

    /// <summary>
    /// One compression method as the spec names it: everything the spec reader, the JSON Schema, the engine's pass
    /// registry, the TorchSharp and TorchScript compressors and the analyzers need to know about it. Adding a method is
    /// its descriptor file, its pass in Compress.Core (marked <c>[ImplementsMethod]</c>) and one line in
    /// <see cref="MethodCatalog"/>.
    /// </summary>
    public sealed class MethodDescriptor
    {
        public MethodDescriptor(
            string name,
            StepKind kind,
            string summary,
            MethodData data,
            ModelFormat formats,
            IReadOnlyList<string>? aliases = null,
            IReadOnlyList<MethodOption>? options = null,
            IReadOnlyList<MethodScheme>? schemes = null,
            IReadOnlyList<string>? opTypes = null,
            IReadOnlyList<string>? touches = null,
            bool patterns = false)
        {
            Name = name;
            Kind = kind;
            Summary = summary;
            Data = data;
            Formats = formats;
            Aliases = aliases ?? Array.Empty<string>();
            Options = options ?? Array.Empty<MethodOption>();
            Schemes = schemes ?? Array.Empty<MethodScheme>();
            OpTypes = opTypes ?? Array.Empty<string>();
            Touches = touches;
            Patterns = patterns;
        }

        /// <summary>The name the spec's <c>method</c> takes, and the one passes register under.</summary>
        public string Name { get; }

        /// <summary>Other names the spec accepts for the method (kept as written in the step, so reports show them).</summary>
        public IReadOnlyList<string> Aliases { get; }

        public StepKind Kind { get; }

        /// <summary>One line for the schema and the docs: what the method does.</summary>
        public string Summary { get; }

        /// <summary>The method's own keys in the step, beside the kind's; a key no chosen method takes is refused.</summary>
        public IReadOnlyList<MethodOption> Options { get; }

        /// <summary>What it needs from <c>data.calibration</c>; the reader refuses the step without it.</summary>
        public MethodData Data { get; }

        public ModelFormat Formats { get; }

        /// <summary>For kinds with schemes (quantize): the forms the method writes; a step asking for another is refused.</summary>
        public IReadOnlyList<MethodScheme> Schemes { get; }

        /// <summary>For kinds without schemes: the step's <c>opTypes</c> when the spec leaves them out.</summary>
        public IReadOnlyList<string> OpTypes { get; }

        /// <summary>
        /// For kinds without schemes: the operators whose weights the method rewrites — a model with none of them gains
        /// nothing from the step (CMP2005); null when the step can change any model.
        /// </summary>
        public IReadOnlyList<string>? Touches { get; }

        /// <summary>Whether the method prunes N:M patterns as well as unstructured sparsity.</summary>
        public bool Patterns { get; }

        /// <summary>The name, then the aliases.</summary>
        public IEnumerable<string> Names => new[] { Name }.Concat(Aliases);

        public MethodOption? Option(string key) => Options.FirstOrDefault(o => o.Key == key);

        public MethodScheme? Scheme(string? name) => name is null ? null : Schemes.FirstOrDefault(s => s.Name == name);

        /// <summary>Whether the method runs on <paramref name="format"/> models (and so does its scheme, when it has one).</summary>
        public bool Offers(ModelFormat format, string? scheme = null) =>
            (Formats & format) != 0 && (Scheme(scheme) is not { } s || (s.Formats & format) != 0);

        public override string ToString() => $"{Kind.Name}/{Name}";
    }
}
