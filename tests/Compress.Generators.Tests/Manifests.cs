namespace Compress.Generators.Tests;

/// <summary>Manifests for the snapshot tests, one per shape of model a wrapper must handle.</summary>
public static class Manifests
{
    public static string Make(string name, string inputs, string outputs, string? compression = null, string ns = "\"App.Models\"", string format = "onnx") => $$"""
        {
          "version": 1,
          "name": "{{name}}",
          "namespace": {{ns}},
          "generateWrapper": true,
          "format": "{{format}}",
          "source": "/src/{{name}}.{{Extension(format)}}",
          "spec": null,
          "artifactPath": "Models/{{name}}.{{Extension(format)}}",
          "artifactSha256": {{(compression is null ? "null" : "\"0123abcd\"")}},
          "compressed": {{(compression is null ? "false" : "true")}},
          "inputs": [ {{inputs}} ],
          "outputs": [ {{outputs}} ],
          "opsets": [ { "domain": "ai.onnx", "version": 17 } ],
          "operators": [],
          "compression": {{compression ?? "null"}}
        }
        """;

    private static string Extension(string format) => format switch { "onnx" => "onnx", "torchsharp" => "dat", _ => "pt" };

    public static readonly string Compression = """
        { "steps": ["prune/magnitude", "quantize/static"], "originalBytes": 1066969, "compressedBytes": 206347,
          "originalAccuracy": 0.8929, "compressedAccuracy": 0.8883, "agreement": 0.9621, "samples": 10000,
          "precisions": ["int8"], "report": null }
        """;

    public static TheoryData<string> Names => new() { "OneInput", "SeveralInputs", "SymbolicDimensions", "Fp16", "Int64AndString", "NoShapeAndKeywords", "StateDict", "TorchScript" };

    public static string ByName(string name) => name switch
    {
        "OneInput" => Make("Classifier",
            """{ "name": "input", "elementType": "float", "shape": [1, 784] }""",
            """{ "name": "logits", "elementType": "float", "shape": [1, 10] }""", Compression),
        "SeveralInputs" => Make("Ranker",
            """{ "name": "query", "elementType": "float", "shape": [4, 16] }, { "name": "doc.features", "elementType": "float", "shape": [4, 32] }, { "name": "mask", "elementType": "bool", "shape": [4] }""",
            """{ "name": "score", "elementType": "float", "shape": [4, 1] }, { "name": "rank", "elementType": "int32", "shape": [4] }""", Compression),
        "SymbolicDimensions" => Make("Ocr",
            """{ "name": "x", "elementType": "float", "shape": ["batch", 3, 48, "width"] }, { "name": "lengths", "elementType": "int64", "shape": ["batch"] }""",
            """{ "name": "softmax_0.tmp_0", "elementType": "float", "shape": ["batch", null, 6625] }"""),
        "Fp16" => Make("HalfNet",
            """{ "name": "input", "elementType": "float16", "shape": ["n", 8] }""",
            """{ "name": "output", "elementType": "float16", "shape": ["n", 8] }, { "name": "argmax", "elementType": "int64", "shape": ["n"] }""", Compression),
        "Int64AndString" => Make("Tagger",
            """{ "name": "token_ids", "elementType": "int64", "shape": ["batch", "sequence"] }, { "name": "text", "elementType": "string", "shape": ["batch"] }""",
            """{ "name": "tags", "elementType": "int64", "shape": ["batch", "sequence"] }, { "name": "label", "elementType": "string", "shape": ["batch"] }"""),
        "NoShapeAndKeywords" => Make("raw model-2",
            """{ "name": "class", "elementType": "uint8", "shape": null }, { "name": "0in", "elementType": "double", "shape": [] }""",
            """{ "name": "out", "elementType": "double", "shape": null }, { "name": "Out", "elementType": "int8", "shape": [2] }""", null, "null"),
        "StateDict" => Make("Classifier", "", "", """
            { "steps": ["prune/magnitude", "quantize/weight-only"], "originalBytes": 409285, "compressedBytes": 67443,
              "precisions": ["int8"], "report": null }
            """, format: "torchsharp"),
        "TorchScript" => Make("TsMlp", "", "", """
            { "steps": ["quantize/weight-only"], "originalBytes": 948398, "compressedBytes": 266047,
              "originalAccuracy": 0.8882, "compressedAccuracy": 0.8877, "agreement": 0.9921, "samples": 10000,
              "precisions": ["int8"], "report": null }
            """, format: "torchscript"),
        _ => throw new ArgumentOutOfRangeException(nameof(name)),
    };
}
