using System.Collections.Generic;
using System.Linq;

namespace Compress.Spec.Methods
{
    /// <summary>
    /// A kind of step (<c>prune</c>, <c>quantize</c>): its key in <c>steps</c>, its own keys and how to read them into
    /// a <see cref="SpecStep"/>. The methods of a kind come from <see cref="MethodCatalog"/>, and with them the kind's
    /// <c>method</c> choices and the options its methods add. A new kind (factorize, allocate, …) is a subclass with its
    /// step class, and methods that name it; the reader takes it from the catalog.
    /// </summary>
    public abstract class StepKind
    {
        public static readonly StepKind Prune = new PruneKind();
        public static readonly StepKind Quantize = new QuantizeKind();
        public static readonly StepKind Factorize = new FactorizeKind();
        public static readonly StepKind Allocate = new AllocateKind();
        public static readonly StepKind Pack = new PackKind();
        public static readonly StepKind Finetune = new FinetuneKind();

        /// <summary>Node selection: the last keys of every kind.</summary>
        public static readonly IReadOnlyList<string> SelectionKeys = new[] { "include", "exclude", "opTypes" };

        protected StepKind(string name, string noun, string defaultMethod, IReadOnlyList<string> ownKeys, IReadOnlyDictionary<string, string[]> choices)
        {
            Name = name;
            Noun = noun;
            DefaultMethod = defaultMethod;
            OwnKeys = ownKeys;
            Choices = choices;
        }

        /// <summary>The step's key in the spec.</summary>
        public string Name { get; }

        /// <summary>What a step of the kind does, for messages (<c>pruning</c>, <c>quantization</c>).</summary>
        public string Noun { get; }

        /// <summary>The method when the step names none.</summary>
        public string DefaultMethod { get; }

        /// <summary>The kind's keys besides its methods' options and the selection keys, <c>method</c> first.</summary>
        public IReadOnlyList<string> OwnKeys { get; }

        /// <summary>The kind's keys with a fixed set of string values, besides <c>method</c>.</summary>
        public IReadOnlyDictionary<string, string[]> Choices { get; }

        public IReadOnlyList<MethodDescriptor> Methods => MethodCatalog.Of(this);

        /// <summary>The keys the methods of the kind add, in catalog order.</summary>
        public IReadOnlyList<string> OptionKeys => Methods.SelectMany(m => m.Options).Select(o => o.Key).Distinct().ToArray();

        /// <summary>Every key a step of the kind may have: its own, its methods' options, the selection keys.</summary>
        public IReadOnlyList<string> Keys => OwnKeys.Concat(OptionKeys).Concat(Selects ? SelectionKeys : new string[0]).Distinct().ToArray();

        /// <summary>Whether steps of the kind choose their nodes (<see cref="SelectionKeys"/>); an allocation covers the next steps' layers.</summary>
        protected virtual bool Selects => true;

        /// <summary>Reads the step's own keys and its method's options; the reader has resolved the method and reads the rest.</summary>
        /// <param name="written">The method as the spec writes it (an alias stays an alias).</param>
        internal abstract SpecStep Read(SpecValues values, JsonNode body, MethodDescriptor method, string written);

        /// <summary>The step in a message about the data its scheme needs.</summary>
        internal virtual string Describe(SpecStep step) => $"{step.Scheme} {Noun}";

        /// <summary>
        /// Reads the options present in the step: the method's own with its range, stored in <see cref="SpecStep.Options"/>
        /// with the method's defaults for those left out; another method's option is checked against that method's range
        /// (and refused by <see cref="RefuseOptionsNotTaken"/>, where the kind calls it).
        /// </summary>
        private protected static void ReadOptions(SpecValues values, JsonNode body, MethodDescriptor method, SpecStep step)
        {
            foreach (var key in method.Kind.OptionKeys)
            {
                var option = method.Option(key);
                if (body[key] is JsonNode node)
                {
                    var declared = option ?? method.Kind.Methods.Select(m => m.Option(key)).First(o => o is not null)!;
                    var value = declared.Type == OptionType.Boolean
                        ? values.Boolean(node, $"'{key}'") ? 1 : 0
                        : values.Number(node, $"'{key}'", declared.Minimum, declared.Maximum, integer: declared.Type == OptionType.Integer);
                    if (option is not null)
                    {
                        step.Options[key] = value;
                    }
                }
                else if (option is not null)
                {
                    step.Options[key] = option.Default;
                }
            }
        }

        /// <summary>Refuses the first option present in the step that its method does not take (CMP0107, at its value).</summary>
        private protected void RefuseOptionsNotTaken(SpecValues values, JsonNode body, MethodDescriptor method, string written)
        {
            foreach (var key in OptionKeys)
            {
                if (body[key] is JsonNode node && method.Option(key) is null)
                {
                    var takers = Methods.Where(m => m.Option(key) is not null).ToList();
                    throw values.Error(SpecCodes.Inconsistent, node, OptionNotTaken(key, takers, written));
                }
            }
        }

        /// <summary>The message for an option the step's method does not take.</summary>
        protected virtual string OptionNotTaken(string key, IReadOnlyList<MethodDescriptor> takers, string written)
        {
            var gloss = takers[0].Option(key)!.Gloss is { } g ? $" ({g})" : "";
            var methods = takers.Count == 1 ? $"'{takers[0].Name}'" : $"the {List(takers.Select(t => t.Name), "and")} methods";
            return $"'{key}'{gloss} applies to {methods}, not '{written}'";
        }

        /// <summary>'a', 'b' and 'c' (or <paramref name="last"/>).</summary>
        internal static string List(IEnumerable<string> items, string last)
        {
            var quoted = items.Select(i => $"'{i}'").ToList();
            return quoted.Count == 1 ? quoted[0] : $"{string.Join(", ", quoted.Take(quoted.Count - 1))} {last} {quoted[quoted.Count - 1]}";
        }

        public override string ToString() => Name;
    }
}
