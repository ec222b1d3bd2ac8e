using System;
using System.Collections.Generic;
using System.Linq;

namespace Compress.Spec.Manifest
{
    /// <summary>The manifest's JSON form: one writer and one reader shared by the CLI, the task and the generator.</summary>
    public static class ManifestJson
    {
        /// <summary>A manifest that is not valid JSON or lacks a required field (generator range).</summary>
        public const string MalformedCode = "CMP1001";

        public static string Write(ModelManifest manifest)
        {
            var w = new JsonWriter().StartObject()
                .Property("version", manifest.Version)
                .Property("name", manifest.Name)
                .Property("namespace", manifest.Namespace)
                .Property("generateWrapper", manifest.GenerateWrapper)
                .Property("format", manifest.Format)
                .Property("source", manifest.Source)
                .Property("spec", manifest.Spec)
                .Property("artifactPath", manifest.ArtifactPath)
                .Property("artifactSha256", manifest.ArtifactSha256)
                .Property("compressed", manifest.Compressed);
            Values(w.Key("inputs"), manifest.Inputs);
            Values(w.Key("outputs"), manifest.Outputs);
            w.Key("opsets").StartArray();
            foreach (var opset in manifest.Opsets)
            {
                w.StartObject().Property("domain", opset.Domain).Property("version", opset.Version).EndObject();
            }

            w.EndArray().Key("operators").StartArray();
            foreach (var op in manifest.Operators)
            {
                w.StartObject().Property("domain", op.Domain).Property("op", op.Op).Property("count", op.Count);
                Strings(w.Key("elementTypes"), op.ElementTypes);
                Strings(w.Key("nodes"), op.Nodes);
                w.EndObject();
            }

            w.EndArray().Key("sourceOperators").StartArray();
            foreach (var op in manifest.SourceOperators)
            {
                w.StartObject().Property("domain", op.Domain).Property("op", op.Op).Property("count", op.Count);
                Strings(w.Key("nodes"), op.Nodes);
                w.EndObject();
            }

            w.EndArray().Key("compression");
            if (manifest.Compression is { } c)
            {
                w.StartObject();
                Strings(w.Key("steps"), c.Steps);
                w.Property("originalBytes", c.OriginalBytes).Property("compressedBytes", c.CompressedBytes);
                Optional(w.Key("originalAccuracy"), c.OriginalAccuracy);
                Optional(w.Key("compressedAccuracy"), c.CompressedAccuracy);
                Optional(w.Key("agreement"), c.Agreement);
                Optional(w.Key("samples"), c.Samples);
                Strings(w.Key("precisions"), c.Precisions);
                w.Property("report", c.Report).EndObject();
            }
            else
            {
                w.Null();
            }

            return w.EndObject().ToString();
        }

        public static ModelManifest Read(string text, string file) => Read(Parse(text, file), file);

        /// <summary>The manifest from its parsed JSON (for callers that also need the positions of its values).</summary>
        public static ModelManifest Read(JsonNode root, string file) => new Reader(file).Manifest(root);

        /// <summary>The manifest's JSON tree; invalid JSON is <see cref="MalformedCode"/>.</summary>
        public static JsonNode Parse(string text, string file)
        {
            try
            {
                return JsonParser.Parse(text, file);
            }
            catch (SpecException e)
            {
                throw new SpecException(MalformedCode, "the manifest is not valid JSON: " + e.Message, file, e.Line, e.Column);
            }
        }

        private static void Values(JsonWriter w, List<ManifestValue> values)
        {
            w.StartArray();
            foreach (var value in values)
            {
                w.StartObject().Property("name", value.Name).Property("elementType", value.ElementType).Key("shape");
                if (value.Shape is null)
                {
                    w.Null();
                }
                else
                {
                    w.StartArray();
                    foreach (var d in value.Shape)
                    {
                        if (d.Value is long n)
                        {
                            w.Number(n);
                        }
                        else
                        {
                            w.String(d.Symbol);
                        }
                    }

                    w.EndArray();
                }

                w.EndObject();
            }

            w.EndArray();
        }

        private static void Strings(JsonWriter w, IEnumerable<string> values)
        {
            w.StartArray();
            foreach (var value in values)
            {
                w.String(value);
            }

            w.EndArray();
        }

        private static void Optional(JsonWriter w, double? value)
        {
            if (value is double d)
            {
                w.Number(d);
            }
            else
            {
                w.Null();
            }
        }

        private static void Optional(JsonWriter w, int? value)
        {
            if (value is int i)
            {
                w.Number(i);
            }
            else
            {
                w.Null();
            }
        }

        private sealed class Reader
        {
            private readonly string _file;

            public Reader(string file) => _file = file;

            public ModelManifest Manifest(JsonNode root)
            {
                Expect(root, JsonKind.Object, "the manifest");
                var version = (int)Number(Required(root, "version"), "version");
                if (version != ModelManifest.CurrentVersion)
                {
                    throw Error(root["version"]!, $"manifest version {version} is not supported (this build reads version {ModelManifest.CurrentVersion}); rebuild with the same Compress.Build package version");
                }

                var manifest = new ModelManifest
                {
                    Name = String(Required(root, "name"), "name")!,
                    Namespace = String(root["namespace"], "namespace"),
                    GenerateWrapper = root["generateWrapper"] is { Kind: JsonKind.Boolean } g ? g.Boolean : true,
                    Format = String(root["format"], "format") ?? "onnx",
                    Source = String(root["source"], "source") ?? "",
                    Spec = String(root["spec"], "spec"),
                    ArtifactPath = String(Required(root, "artifactPath"), "artifactPath")!,
                    ArtifactSha256 = String(root["artifactSha256"], "artifactSha256"),
                    Compressed = root["compressed"] is { Kind: JsonKind.Boolean } c && c.Boolean,
                };
                if (manifest.Name.Length == 0)
                {
                    throw Error(root["name"]!, "'name' is empty");
                }

                manifest.Inputs.AddRange(Values(Required(root, "inputs"), "inputs"));
                manifest.Outputs.AddRange(Values(Required(root, "outputs"), "outputs"));
                foreach (var item in Items(root["opsets"], "opsets"))
                {
                    manifest.Opsets.Add(new ManifestOpset(String(Required(item, "domain"), "domain")!, (long)Number(Required(item, "version"), "version")));
                }

                foreach (var item in Items(root["operators"], "operators"))
                {
                    var op = new ManifestOperator
                    {
                        Domain = String(item["domain"], "domain") ?? "ai.onnx",
                        Op = String(Required(item, "op"), "op")!,
                        Count = item["count"] is { } n ? (int)Number(n, "count") : 1,
                    };
                    op.ElementTypes.AddRange(Items(item["elementTypes"], "elementTypes").Select(t => String(t, "elementTypes")!));
                    op.Nodes.AddRange(Items(item["nodes"], "nodes").Select(t => String(t, "nodes")!));
                    manifest.Operators.Add(op);
                }

                foreach (var item in Items(root["sourceOperators"], "sourceOperators"))
                {
                    var op = new ManifestOperator
                    {
                        Domain = String(item["domain"], "domain") ?? "ai.onnx",
                        Op = String(Required(item, "op"), "op")!,
                        Count = item["count"] is { } n ? (int)Number(n, "count") : 1,
                    };
                    op.Nodes.AddRange(Items(item["nodes"], "nodes").Select(t => String(t, "nodes")!));
                    manifest.SourceOperators.Add(op);
                }

                if (root["compression"] is { Kind: JsonKind.Object } s)
                {
                    var compression = new ManifestCompression
                    {
                        OriginalBytes = s["originalBytes"] is { } ob ? (long)Number(ob, "originalBytes") : 0,
                        CompressedBytes = s["compressedBytes"] is { } cb ? (long)Number(cb, "compressedBytes") : 0,
                        OriginalAccuracy = OptionalNumber(s["originalAccuracy"], "originalAccuracy"),
                        CompressedAccuracy = OptionalNumber(s["compressedAccuracy"], "compressedAccuracy"),
                        Agreement = OptionalNumber(s["agreement"], "agreement"),
                        Samples = OptionalNumber(s["samples"], "samples") is double d ? (int)d : (int?)null,
                        Report = String(s["report"], "report"),
                    };
                    compression.Steps.AddRange(Items(s["steps"], "steps").Select(t => String(t, "steps")!));
                    compression.Precisions.AddRange(Items(s["precisions"], "precisions").Select(t => String(t, "precisions")!));
                    manifest.Compression = compression;
                }

                return manifest;
            }

            private IEnumerable<ManifestValue> Values(JsonNode node, string what)
            {
                foreach (var item in Items(node, what))
                {
                    var value = new ManifestValue
                    {
                        Name = String(Required(item, "name"), "name")!,
                        ElementType = String(Required(item, "elementType"), "elementType")!,
                    };
                    if (item["shape"] is { Kind: JsonKind.Array } shape)
                    {
                        value.Shape = shape.Items.Select(d => d.Kind switch
                        {
                            JsonKind.Number => new ManifestDimension((long)d.Number, null),
                            JsonKind.String => new ManifestDimension(null, d.Text),
                            JsonKind.Null => new ManifestDimension(null, null),
                            _ => throw Error(d, "a shape dimension must be a number, a string or null"),
                        }).ToList();
                    }

                    yield return value;
                }
            }

            private IEnumerable<JsonNode> Items(JsonNode? node, string what)
            {
                if (node is null || node.Kind == JsonKind.Null)
                {
                    return Array.Empty<JsonNode>();
                }

                Expect(node, JsonKind.Array, $"'{what}'");
                return node.Items;
            }

            private JsonNode Required(JsonNode parent, string key) =>
                parent[key] ?? throw Error(parent, $"the manifest lacks '{key}'");

            private string? String(JsonNode? node, string what)
            {
                if (node is null || node.Kind == JsonKind.Null)
                {
                    return null;
                }

                Expect(node, JsonKind.String, $"'{what}'");
                return node.Text;
            }

            private double Number(JsonNode node, string what)
            {
                Expect(node, JsonKind.Number, $"'{what}'");
                return node.Number;
            }

            private double? OptionalNumber(JsonNode? node, string what) =>
                node is null || node.Kind == JsonKind.Null ? (double?)null : Number(node, what);

            private void Expect(JsonNode node, JsonKind kind, string what)
            {
                if (node.Kind != kind)
                {
                    throw Error(node, $"{what} must be {JsonNode.Describe(kind)}, not {JsonNode.Describe(node.Kind)}");
                }
            }

            private SpecException Error(JsonNode node, string message) => new SpecException(MalformedCode, message, _file, node.Line, node.Column);
        }
    }
}
