using System.Collections.Generic;

namespace Compress.Spec
{
    public enum JsonKind
    {
        Object,
        Array,
        String,
        Number,
        Boolean,
        Null,
    }

    /// <summary>A JSON value with the line and column (1-based) where it starts, for precise diagnostics.</summary>
    public sealed class JsonNode
    {
        internal JsonNode(JsonKind kind, int line, int column)
        {
            Kind = kind;
            Line = line;
            Column = column;
        }

        public JsonKind Kind { get; }

        public int Line { get; }

        public int Column { get; }

        /// <summary>Object members in file order (key, the key's position, value).</summary>
        public List<JsonMember> Members { get; } = new List<JsonMember>();

        public List<JsonNode> Items { get; } = new List<JsonNode>();

        public string? Text { get; internal set; }

        public double Number { get; internal set; }

        public bool Boolean { get; internal set; }

        public JsonNode? this[string key]
        {
            get
            {
                foreach (var member in Members)
                {
                    if (member.Key == key)
                    {
                        return member.Value;
                    }
                }

                return null;
            }
        }

        public static string Describe(JsonKind kind) => kind switch
        {
            JsonKind.Object => "an object",
            JsonKind.Array => "an array",
            JsonKind.String => "a string",
            JsonKind.Number => "a number",
            JsonKind.Boolean => "true or false",
            _ => "null",
        };
    }

    public sealed class JsonMember
    {
        public JsonMember(string key, int line, int column, JsonNode value)
        {
            Key = key;
            Line = line;
            Column = column;
            Value = value;
        }

        public string Key { get; }

        public int Line { get; }

        public int Column { get; }

        public JsonNode Value { get; }
    }
}
