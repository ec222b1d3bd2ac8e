using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using Compress.Core.Tests.TestSupport;
using Compress.Spec.Methods;

namespace Compress.Core.Tests.Spec;

/// <summary>
/// schemas/compress-spec.schema.json with its method-owned parts generated from <see cref="MethodCatalog"/>: the step
/// kinds under <c>steps</c>, each kind's <c>method</c> (names, aliases, default, summaries) and its methods' options
/// (type, the widest range, the default when the methods share it, each method's summary with its own default and
/// range where they differ). Everything else is kept as written, in the kind's key order, in one layout: a value fits
/// on its line (up to <see cref="Width"/> columns) unless it is or holds <c>properties</c> or <c>$defs</c>.
/// <c>./build.sh schema</c> rewrites the file.
/// </summary>
public static class SpecSchema
{
    private const int Width = 240;

    private static readonly JsonSerializerOptions Text = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static string FilePath => Path.Combine(TestData.RepoRoot, "schemas", "compress-spec.schema.json");

    public static string Generate(string current)
    {
        var root = JsonNode.Parse(current)!.AsObject();
        var steps = root["properties"]!["steps"]!["items"]!.AsObject();
        steps["properties"] = new JsonObject(MethodCatalog.Kinds.Select(k => Member(k.Name, new JsonObject { ["$ref"] = $"#/$defs/{k.Name}" })));
        foreach (var kind in MethodCatalog.Kinds)
        {
            var definition = root["$defs"]![kind.Name]?.AsObject() ?? throw new InvalidOperationException($"add \"$defs\": {{ \"{kind.Name}\": … }} to the schema");
            var written = definition["properties"]!.AsObject();
            definition["properties"] = new JsonObject(kind.Keys.Select(key => Member(key,
                key == "method" ? Method(kind)
                : kind.OptionKeys.Contains(key) ? Option(kind, key)
                : written[key]?.DeepClone() ?? throw new InvalidOperationException($"add \"{key}\" to the schema's $defs.{kind.Name}.properties"))));
        }

        var text = new StringBuilder();
        Write(text, root, 0, 0);
        return text.Append('\n').ToString();
    }

    private static JsonObject Method(StepKind kind)
    {
        var needs = kind.Methods.Where(m => m.Data != MethodData.None).Select(m => m.Name).ToList();
        var description = string.Join("; ", kind.Methods.Select(m => $"{string.Join("/", m.Names)}: {m.Summary}")) + "."
            + (needs.Count > 0 ? $" Need calibration data: {string.Join(", ", needs)}." : "");
        return new JsonObject
        {
            ["enum"] = new JsonArray(kind.Methods.SelectMany(m => m.Names).Select(n => (JsonNode)n).ToArray()),
            ["default"] = kind.DefaultMethod,
            ["description"] = description,
        };
    }

    private static JsonObject Option(StepKind kind, string key)
    {
        var takers = kind.Methods.Where(m => m.Option(key) is not null).Select(m => (m.Name, Option: m.Option(key)!)).ToList();
        var first = takers[0].Option;
        var sameDefault = takers.All(t => t.Option.Default == first.Default);
        var sameRange = takers.All(t => t.Option.Minimum == first.Minimum && t.Option.Maximum == first.Maximum);
        var entry = new JsonObject { ["type"] = first.Type switch { OptionType.Integer => "integer", OptionType.Number => "number", _ => "boolean" } };
        if (first.Type != OptionType.Boolean)
        {
            entry["minimum"] = Number(first, takers.Min(t => t.Option.Minimum));
            entry["maximum"] = Number(first, takers.Max(t => t.Option.Maximum));
        }

        if (sameDefault)
        {
            entry["default"] = Number(first, first.Default);
        }

        entry["description"] = string.Join("; ", takers.Select(t =>
        {
            var details = new[] { sameDefault ? null : t.Option.DefaultText, sameRange ? null : $"{t.Option.Text(t.Option.Minimum)}–{t.Option.Text(t.Option.Maximum)}" }.OfType<string>().ToList();
            return $"{t.Name}: {t.Option.Summary}" + (details.Count > 0 ? $" ({string.Join(", ", details)})" : "");
        })) + ".";
        return entry;
    }

    /// <summary>A number (or boolean) as the docs write it, kept as written when serialized.</summary>
    private static JsonNode Number(MethodOption option, double value) => JsonNode.Parse(option.Text(value))!;

    private static KeyValuePair<string, JsonNode?> Member(string key, JsonNode? value) => new(key, value);

    /// <param name="column">Where the value starts on its line (after its key).</param>
    /// <param name="lines">Whether an object takes a line per member however short (properties, $defs).</param>
    private static void Write(StringBuilder text, JsonNode? node, int indent, int column, bool lines = false)
    {
        if (!lines && Inline(node) is { } line && (column + line.Length <= Width || node is not (JsonObject or JsonArray)))
        {
            text.Append(line);
            return;
        }

        var pad = new string(' ', indent + 2);
        if (node is JsonArray array)
        {
            text.Append("[\n");
            for (var i = 0; i < array.Count; i++)
            {
                text.Append(pad);
                Write(text, array[i], indent + 2, indent + 2);
                text.Append(i < array.Count - 1 ? ",\n" : "\n");
            }

            text.Append(' ', indent).Append(']');
            return;
        }

        var members = node!.AsObject().ToList();
        text.Append("{\n");
        for (var i = 0; i < members.Count; i++)
        {
            var key = $"{Scalar(members[i].Key)}: ";
            text.Append(pad).Append(key);
            Write(text, members[i].Value, indent + 2, indent + 2 + key.Length, members[i].Key is "properties" or "$defs");
            text.Append(i < members.Count - 1 ? ",\n" : "\n");
        }

        text.Append(' ', indent).Append('}');
    }

    /// <summary>The value on one line, or null when it must take several (it holds properties or $defs).</summary>
    private static string? Inline(JsonNode? node)
    {
        switch (node)
        {
            case JsonObject o when o.Any(m => m.Key is "properties" or "$defs"):
                return null;
            case JsonObject o:
                var members = o.Select(m => Inline(m.Value) is { } v ? $"{Scalar(m.Key)}: {v}" : null).ToList();
                return members.Contains(null) ? null : members.Count == 0 ? "{}" : $"{{ {string.Join(", ", members)} }}";
            case JsonArray a:
                var items = a.Select(Inline).ToList();
                return items.Contains(null) ? null : $"[{string.Join(", ", items)}]";
            default:
                return node?.ToJsonString(Text) ?? "null";
        }
    }

    private static string Scalar(string text) => JsonSerializer.Serialize(text, Text);
}
