using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;

namespace Compress.Spec
{
    /// <summary>
    /// Typed values out of spec JSON, each refused with its code at the value's line and column: what the spec reader
    /// and the step kinds (<see cref="Methods.StepKind"/>) share.
    /// </summary>
    internal class SpecValues
    {
        public SpecValues(string file)
        {
            File = file;
        }

        public string File { get; }

        /// <summary>Whether an <c>allocate</c> step came before the step being read (a prune step may then leave its sparsity to it).</summary>
        public bool Allocating { get; set; }

        /// <summary>The value of <paramref name="key"/> if it is one of <see cref="SpecReader.Choices"/>[<paramref name="table"/>], else CMP0103.</summary>
        public string? Choice(JsonNode node, string key, string table)
        {
            var value = node[key];
            if (value == null)
            {
                return null;
            }

            var text = String(value, $"'{key}'");
            var allowed = SpecReader.Choices[table];
            if (!allowed.Contains(text))
            {
                throw Error(SpecCodes.OutOfRange, value, $"'{key}' is '{text}'; allowed: {string.Join(", ", allowed)}");
            }

            return text;
        }

        public void StringList(JsonNode node, string key, List<string> into)
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

        public double? OptionalNumber(JsonNode node, string key, double min, double max, bool integer = false) =>
            node[key] is JsonNode value ? Number(value, $"'{key}'", min, max, integer) : (double?)null;

        public double Number(JsonNode node, string what, double min, double max, bool integer = false)
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

        public string String(JsonNode node, string what)
        {
            Type(node, JsonKind.String, what);
            return node.Text!;
        }

        public bool Boolean(JsonNode node, string what)
        {
            Type(node, JsonKind.Boolean, what);
            return node.Boolean;
        }

        /// <summary>An object whose keys are all in <see cref="SpecReader.Keys"/>[<paramref name="table"/>] (else CMP0101, with a suggestion).</summary>
        public void Object(JsonNode node, string table, string what)
        {
            Type(node, JsonKind.Object, what);
            var allowed = SpecReader.Keys[table];
            foreach (var member in node.Members)
            {
                if (!allowed.Contains(member.Key))
                {
                    var suggestion = allowed.OrderBy(k => Distance(k, member.Key)).First();
                    var hint = Distance(suggestion, member.Key) <= Math.Max(2, member.Key.Length / 3) ? $"; did you mean '{suggestion}'?" : "";
                    throw new SpecException(SpecCodes.UnknownKey,
                        $"unknown key '{member.Key}' in {what}{hint} (allowed: {string.Join(", ", allowed)})", File, member.Line, member.Column);
                }
            }
        }

        public void Type(JsonNode node, JsonKind kind, string what)
        {
            if (node.Kind != kind)
            {
                throw Error(SpecCodes.WrongType, node, $"{what} must be {JsonNode.Describe(kind)}, not {JsonNode.Describe(node.Kind)}");
            }
        }

        public SpecException Missing(JsonNode node, string key, string what) =>
            Error(SpecCodes.MissingKey, node, $"{what} needs '{key}'");

        public SpecException Error(string code, JsonNode node, string message) =>
            new SpecException(code, message, File, node.Line, node.Column);

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
