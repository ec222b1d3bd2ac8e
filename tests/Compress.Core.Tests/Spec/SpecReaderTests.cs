using Compress.Core.Diagnostics;
using Compress.Core.Tests.TestSupport;
using Compress.Spec;

namespace Compress.Core.Tests.Spec;

/// <summary>Malformed specs: each gives its code at the exact line and column of the offending text.</summary>
public sealed class SpecReaderTests : TempDirectoryTest
{
    public static TheoryData<string, string, int, int, string> Malformed => new()
    {
        // spec text (⟨data⟩ is replaced by an existing data file), code, line, column, message fragment
        { "{\n  \"steps\": [\n    { \"prune\": { \"sparsity\": 0.5 } }\n    { \"quantize\": {} }\n  ]\n}", "CMP0100", 4, 5, "',' or ']' expected" },
        { "{ \"steps\": [ { \"prune\": { \"sparsity\": 0.5 } } ] } x", "CMP0100", 1, 51, "after the end" },
        { "{ \"steps\": [], \"steps\": [] }", "CMP0100", 1, 16, "duplicate key 'steps'" },
        { "", "CMP0100", 1, 1, "unexpected end of file" },
        { "{ \"steps\": [ { \"prune\": { \"sparsity\": .5 } } ] }", "CMP0100", 1, 39, "unexpected character" },
        { "{\n  \"stepz\": []\n}", "CMP0101", 2, 3, "did you mean 'steps'" },
        { "{ \"steps\": [ { \"prune\": {\n    \"sparsty\": 0.5 } } ] }", "CMP0101", 2, 5, "did you mean 'sparsity'" },
        { "{ \"steps\": [ { \"prune\": { \"sparsity\": \"0.5\" } } ] }", "CMP0102", 1, 39, "must be a number, not a string" },
        { "{ \"steps\": [ { \"prune\": { \"sparsity\": 0.5 }, \"quantize\": {} } ] }", "CMP0102", 1, 14, "exactly one key" },
        { "{ \"steps\": { } }", "CMP0102", 1, 12, "must be an array" },
        { "{ \"steps\": [ { \"prune\": { \"sparsity\": 1.5 } } ] }", "CMP0103", 1, 39, "between 0 and 0.999" },
        { "{ \"steps\": [ { \"quantize\": { \"weights\": \"int3\" } } ] }", "CMP0103", 1, 41, "allowed: int8, int4, fp16" },
        { "{ \"steps\": [ { \"quantize\": { \"weights\": \"int4\", \"blockSize\": 48 } } ] }", "CMP0103", 1, 62, "power of two" },
        { "{ \"steps\": [] }", "CMP0103", 1, 12, "'steps' is empty" },
        { "{ \"data\": {} }", "CMP0104", 1, 1, "needs 'steps'" },
        { "{ \"steps\": [ { \"prune\": { \"scope\": \"layer\" } } ] }", "CMP0104", 1, 25, "needs 'sparsity'" },
        { "{ \"steps\": [ { \"prune\": { \"method\": \"random\", \"sparsity\": 0.5 } } ] }", "CMP0105", 1, 37, "unknown method 'random'" },
        { "{ \"steps\": [ { \"prune\": { \"method\": \"obs\", \"sparsity\": 0.5 } } ] }", "CMP0107", 1, 16, "'obs' needs calibration data (activations)" },
        { "{ \"steps\": [ { \"prune\": { \"method\": \"snip\", \"sparsity\": 0.5 } } ] }", "CMP0107", 1, 16, "'snip' needs calibration data (activations and gradients)" },
        { "{ \"steps\": [ { \"quantize\": { \"method\": \"gptq\", \"weights\": \"int4\" } } ] }", "CMP0107", 1, 16, "'gptq' needs calibration data" },
        { "{ \"data\": { \"calibration\": { \"path\": \"⟨data⟩\" } }, \"steps\": [ { \"quantize\": { \"method\": \"gptq\", \"activations\": \"dynamic\" } } ] }", "CMP0107", 1, 91, "'gptq' writes int4/int8 weight-only" },
        { "{ \"steps\": [ { \"prune\": { \"sparsity\": 0.5, \"steps\": 4 } } ] }", "CMP0107", 1, 53, "'steps' (Fisher recomputations) applies to 'woodfisher'" },
        { "{ \"steps\": [ { \"prune\": { \"method\": \"snip\", \"sparsity\": 0.5, \"blockSize\": 64 } } ] }", "CMP0107", 1, 75, "'blockSize' applies to the 'obs' and 'woodfisher' methods" },
        { "{ \"steps\": [ { \"prune\": { \"method\": \"woodfisher\", \"sparsity\": 0.5, \"pattern\": \"2:4\" } } ] }", "CMP0107", 1, 79, "prunes unstructured" },
        { "{ \"steps\": [ { \"prune\": { \"method\": \"snip\", \"sparsity\": 0.5, \"pattern\": \"channel\" } } ] }", "CMP0107", 1, 73, "pattern 'channel' is pruned by 'magnitude' (data-free) or 'obs'" },
        { "{ \"steps\": [ { \"prune\": { \"sparsity\": 0.5 } } ], \"constraints\": { \"maxLatencyRatio\": 1 } }", "CMP0107", 1, 86, "'maxLatencyRatio' needs data to time the models on" },
        { "{ \"steps\": [ { \"factorize\": { \"energy\": 0.9 } } ] }", "CMP0107", 1, 16, "'svd' needs calibration data (activations)" },
        { "{ \"steps\": [ { \"factorize\": { \"energy\": 0.2 } } ] }", "CMP0103", 1, 41, "'energy'" },
        { "{ \"steps\": [ { \"prune\": { \"sparsity\": \"auto\" } } ] }", "CMP0107", 1, 16, "set constraints.maxAccuracyDrop, minAgreement, minCosine or minSqnrDb" },
        { "{ \"steps\": [ { \"prune\": { \"sparsity\": \"most\" } } ] }", "CMP0102", 1, 39, "the one string it takes is \"auto\"" },
        { "{ \"steps\": [ { \"quantize\": { \"weights\": \"int8\", \"actOrder\": true } } ] }", "CMP0107", 1, 61, "apply to 'method': 'gptq'" },
        { "{ \"data\": { \"calibration\": { \"path\": \"nope.npz\" } }, \"steps\": [ { \"prune\": { \"sparsity\": 0.5 } } ] }", "CMP0106", 1, 38, "data file 'nope.npz' not found" },
        { "{ \"steps\": [ { \"quantize\": { \"weights\": \"int8\", \"activations\": \"int8\" } } ] }", "CMP0107", 1, 16, "needs calibration data" },
        { "{ \"steps\": [ { \"prune\": { \"sparsity\": 0.3, \"pattern\": \"2:4\" } } ] }", "CMP0107", 1, 39, "must be 0.5" },
        { "{ \"data\": { \"evaluation\": { \"path\": \"⟨data⟩\", \"metric\": \"accuracy\" } }, \"steps\": [ { \"prune\": { \"sparsity\": 0.5 } } ] }", "CMP0107", 1, 59, "needs 'labels'" },
        { "{ \"steps\": [ { \"prune\": { \"method\": \"obs\", \"sparsity\": 0.5, \"pattern\": \"2:4\", \"blockSize\": 30 } } ], \"data\": { \"calibration\": { \"path\": \"⟨data⟩\" } } }", "CMP0107", 1, 92, "must be a multiple of M (4)" },
        { "{ \"data\": { \"calibration\": { \"path\": \"⟨data⟩\", \"samples\": 1.5 } }, \"steps\": [ { \"prune\": { \"sparsity\": 0.5 } } ] }", "CMP0102", 1, 61, "whole number" },
        { "{ \"steps\": [ { \"quantize\": { \"weights\": \"fp16\", \"calibration\": \"entropy\" } } ] }", "CMP0107", 1, 64, "applies to static quantization" },
        { "{ \"steps\": [ { \"quantize\": { \"weights\": \"int8\", \"activations\": \"int8\", \"smoothing\": 1.5 } } ] }", "CMP0103", 1, 85, "'smoothing' is 1.5; it must be between 0 and 1" },
        { "{ \"steps\": [ { \"quantize\": { \"weights\": \"int8\", \"activations\": \"int8\", \"smoothing\": -0.1 } } ] }", "CMP0103", 1, 85, "'smoothing' is -0.1; it must be between 0 and 1" },
        { "{ \"steps\": [ { \"quantize\": { \"weights\": \"int8\", \"activations\": \"int8\", \"smoothing\": true } } ] }", "CMP0102", 1, 85, "'smoothing' must be a number" },
        { "{ \"steps\": [ { \"quantize\": { \"weights\": \"int8\", \"activations\": \"dynamic\", \"smoothing\": 0.5 } } ] }", "CMP0107", 1, 88, "applies to static quantization" },
        { "{ \"steps\": [ { \"quantize\": { \"weights\": \"int4\", \"form\": \"fast\" } } ] }", "CMP0103", 1, 57, "allowed: auto, kernel, float, int8" },
        { "{ \"steps\": [ { \"quantize\": { \"weights\": \"int8\", \"activations\": \"dynamic\", \"form\": \"float\" } } ] }", "CMP0107", 1, 83, "'form' applies to weight-only quantization" },
        { "{ \"steps\": [ { \"quantize\": { \"weights\": \"int4\", \"form\": \"float\" } }, { \"prune\": { \"sparsity\": 0.5 } } ] }", "CMP0107", 1, 16, "make this quantize step the last" },
        { "{ \"steps\": [ { \"quantize\": { \"weights\": \"int4\", \"form\": \"int8\" } }, { \"prune\": { \"sparsity\": 0.5 } } ] }", "CMP0107", 1, 16, "'form': 'int8' leaves the weights" },
        { "{ \"steps\": [ { \"quantize\": { \"weights\": \"int8\", \"activations\": \"int8\", \"form\": \"int8\" } } ] }", "CMP0107", 1, 80, "'form' applies to weight-only quantization" },
        { "{ \"data\": { \"calibration\": { \"path\": \"⟨data⟩\" } }, \"steps\": [ { \"allocate\": { \"size\": 0.1 } } ] }", "CMP0107", 1, 67, "add one after it" },
        { "{ \"data\": { \"calibration\": { \"path\": \"⟨data⟩\" } }, \"steps\": [ { \"allocate\": { \"size\": 0.1 } }, { \"prune\": { \"method\": \"obs\", \"sparsity\": 0.5 } } ] }", "CMP0107", 1, 100, "leave out 'sparsity'" },
        { "{ \"data\": { \"calibration\": { \"path\": \"⟨data⟩\" } }, \"steps\": [ { \"allocate\": { } }, { \"prune\": { \"method\": \"obs\" } } ] }", "CMP0107", 1, 67, "'allocate' needs a budget" },
        { "{ \"data\": { \"calibration\": { \"path\": \"⟨data⟩\" } }, \"steps\": [ { \"allocate\": { \"size\": 0.1, \"bits\": [4] } }, { \"quantize\": { \"weights\": \"int8\", \"activations\": \"dynamic\" } } ] }", "CMP0107", 1, 67, "bits 4 cannot be stored by the quantize step after it" },
        { "{ \"data\": { \"calibration\": { \"path\": \"⟨data⟩\" } }, \"steps\": [ { \"allocate\": { \"size\": 0.1 } }, { \"prune\": { \"method\": \"woodfisher\" } } ] }", "CMP0107", 1, 100, "for 'obs', 'wanda' or 'magnitude', not 'woodfisher'" },
        { "{ \"data\": { \"calibration\": { \"path\": \"⟨data⟩\" } }, \"steps\": [ { \"allocate\": { \"size\": 0.1, \"include\": [\"fc1\"] } }, { \"prune\": { \"method\": \"obs\" } } ] }", "CMP0101", 1, 94, "include" },
        { "{ \"target\": { \"executionProvider\": \"cuda\" }, \"steps\": [ { \"prune\": { \"sparsity\": 0.5 } } ] }", "CMP0103", 1, 36, "allowed: cpu" },
        { "{ \"data\": { \"calibration\": { \"synthesize\": \"batchnorm\", \"path\": \"⟨data⟩\" } }, \"steps\": [ { \"prune\": { \"sparsity\": 0.5 } } ] }", "CMP0107", 1, 65, "not both" },
        { "{ \"data\": { \"calibration\": { \"synthesize\": \"gaussian\" } }, \"steps\": [ { \"prune\": { \"sparsity\": 0.5 } } ] }", "CMP0103", 1, 44, "allowed: batchnorm" },
        { "{ \"data\": { \"calibration\": { \"synthesize\": \"batchnorm\", \"labels\": \"y\" } }, \"steps\": [ { \"prune\": { \"sparsity\": 0.5 } } ] }", "CMP0101", 1, 57, "allowed: synthesize, samples, seed, iterations" },
        { "{ \"data\": { \"calibration\": { \"synthesize\": \"batchnorm\", \"samples\": 0 } }, \"steps\": [ { \"prune\": { \"sparsity\": 0.5 } } ] }", "CMP0103", 1, 68, "'samples' is 0" },
        { "{ \"data\": { \"calibration\": { \"samples\": 64 } }, \"steps\": [ { \"prune\": { \"sparsity\": 0.5 } } ] }", "CMP0104", 1, 28, "or 'synthesize': 'batchnorm'" },
        { "{ \"data\": { \"calibration\": { \"synthesize\": \"batchnorm\" } }, \"steps\": [ { \"quantize\": { \"weights\": \"int8\", \"activations\": \"int8\" } } ], \"constraints\": { \"minAgreement\": 0.99 } }", "CMP0107", 1, 169, "'minAgreement' is checked on real data" },
        { "{ \"steps\": [ { \"quantize\": { \"weights\": \"int8\", \"activations\": \"uint8\" } } ] }", "CMP0107", 1, 16, "or \"synthesize\": \"batchnorm\" in data.calibration to synthesise inputs from the model's BatchNormalization statistics (the model must have BatchNormalization layers)" },
        { "{ \"steps\": [ { \"prune\": { \"method\": \"obs\", \"sparsity\": 0.5 } } ] }", "CMP0107", 1, 16, "\"synthesize\": \"batchnorm\"" },
        { "{ \"data\": { \"calibration\": { \"path\": \"⟨data⟩\" } }, \"steps\": [ { \"allocate\": { \"size\": 0.5 } }, { \"prune\": { \"method\": \"obs\", \"pattern\": \"2:4\", \"sparsity\": 0.3 } } ] }", "CMP0107", 1, 100, "leave out 'sparsity'" },
        { "{ \"module\": { \"type\": \"Models.Mlp\" }, \"steps\": [ { \"prune\": { \"sparsity\": 0.5 } } ] }", "CMP0107", 1, 23, "names no assembly: write 'Namespace.Type, AssemblyName'" },
        { "{ \"module\": { \"assembly\": \"x.dll\", \"type\": \"A.B\" }, \"steps\": [ { \"prune\": { \"sparsity\": 0.5 } } ] }", "CMP0106", 1, 27, "assembly 'x.dll' not found" },
        { "{ \"module\": { \"type\": \"A.B, C\", \"arguments\": [ [1] ] }, \"steps\": [ { \"prune\": { \"sparsity\": 0.5 } } ] }", "CMP0102", 1, 48, "a constructor argument is a number, a string or a boolean" },
        { "{ \"module\": { \"name\": \"x\" }, \"steps\": [ { \"prune\": { \"sparsity\": 0.5 } } ] }", "CMP0101", 1, 15, "allowed: type, assembly, arguments" },
        { "{ \"module\": { }, \"steps\": [ { \"prune\": { \"sparsity\": 0.5 } } ] }", "CMP0104", 1, 13, "needs 'type'" },
        { "{ \"data\": { \"calibration\": { \"path\": \"⟨data⟩\" } }, \"steps\": [ { \"allocate\": { \"macs\": 0.3 } }, { \"prune\": { \"method\": \"obs\" } } ] }", "CMP0107", 1, 67, "a 'macs' budget is met by removing whole channels" },
        { "{ \"data\": { \"calibration\": { \"path\": \"⟨data⟩\" } }, \"steps\": [ { \"allocate\": { \"size\": 0.3, \"macs\": 0.3 } }, { \"prune\": { \"method\": \"obs\", \"pattern\": \"channel\" } } ] }", "CMP0107", 1, 102, "give one budget" },
        { "{ \"data\": { \"calibration\": { \"path\": \"⟨data⟩\" } }, \"steps\": [ { \"allocate\": { \"size\": 0.3 } }, { \"prune\": { \"method\": \"obs\", \"pattern\": \"channel\" } } ] }", "CMP0107", 1, 67, "give 'macs' or 'latency' instead of 'size'/'bytes'" },
        { "{ \"data\": { \"calibration\": { \"path\": \"⟨data⟩\" } }, \"steps\": [ { \"allocate\": { \"macs\": 0.3 } }, { \"prune\": { \"method\": \"magnitude\", \"pattern\": \"channel\" } } ] }", "CMP0107", 1, 100, "use method 'obs', not 'magnitude'" },
        { "{ \"data\": { \"calibration\": { \"path\": \"⟨data⟩\" } }, \"steps\": [ { \"allocate\": { \"macs\": 0.3, \"rounds\": 3 } }, { \"prune\": { \"method\": \"obs\", \"pattern\": \"channel\" } } ] }", "CMP0107", 1, 67, "every round would choose the same counts" },
        { "{ \"data\": { \"calibration\": { \"path\": \"⟨data⟩\" } }, \"steps\": [ { \"allocate\": { \"latency\": 0.5, \"bits\": [8] } }, { \"prune\": { \"method\": \"obs\", \"pattern\": \"channel\" } } ] }", "CMP0107", 1, 67, "chooses channel counts, not bits" },
        { "{ \"data\": { \"calibration\": { \"path\": \"⟨data⟩\" } }, \"steps\": [ { \"allocate\": { \"latency\": 0.5 } }, { \"factorize\": { } } ] }", "CMP0107", 1, 67, "the ranks of a factorize step are allocated under 'size', 'bytes' or 'macs'" },
        { "{ \"data\": { \"calibration\": { \"path\": \"⟨data⟩\" } }, \"steps\": [ { \"allocate\": { \"size\": 0.5, \"bits\": [8] } }, { \"factorize\": { } } ] }", "CMP0107", 1, 67, "chooses ranks, not bits" },
        { "{ \"data\": { \"calibration\": { \"path\": \"⟨data⟩\" } }, \"steps\": [ { \"allocate\": { \"size\": 0.5 } }, { \"factorize\": { \"parameterRatio\": 0.2 } } ] }", "CMP0107", 1, 100, "leave out 'parameterRatio'" },
        { "{ \"data\": { \"calibration\": { \"path\": \"⟨data⟩\" } }, \"steps\": [ { \"allocate\": { \"macs\": 0 } }, { \"prune\": { \"method\": \"obs\", \"pattern\": \"channel\" } } ] }", "CMP0103", 1, 89, "'macs'" },
        { "{ \"data\": { \"calibration\": { \"path\": \"⟨data⟩\" } }, \"steps\": [ { \"allocate\": { \"latency\": 1.5 } }, { \"prune\": { \"method\": \"obs\", \"pattern\": \"channel\" } } ] }", "CMP0103", 1, 92, "'latency'" },
    };

    [Theory]
    [MemberData(nameof(Malformed))]
    public void Malformed_specs_are_located(string text, string code, int line, int column, string message)
    {
        File.WriteAllBytes(Path.Combine(Dir, "data.npz"), [0]);
        var path = SpecFiles.Write(Dir, text.Replace("⟨data⟩", "data.npz"));
        var before = File.ReadAllText(path);
        var e = Assert.Throws<CompressException>(() => Core.Spec.SpecLoader.Load(path));
        Assert.Equal(code, e.Diagnostic.Code);
        Assert.Equal(path, e.Diagnostic.File);
        Assert.Equal((line, column), (e.Diagnostic.Line, e.Diagnostic.Column));
        Assert.Contains(message, e.Diagnostic.Message);
        Assert.StartsWith($"{path}({line},{column}): error {code}: ", e.Diagnostic.ToString());
        Assert.Equal(before, File.ReadAllText(path));
    }

    [Fact]
    public void A_full_spec_reads_with_defaults_and_comments()
    {
        File.WriteAllBytes(Path.Combine(Dir, "calib.npz"), [0]);
        File.WriteAllBytes(Path.Combine(Dir, "val.npz"), [0]);
        var spec = SpecFiles.Load(Dir, """
        {
          // comments are allowed
          "$schema": "../schemas/compress-spec.schema.json",
          "data": {
            "calibration": { "path": "calib.npz", "samples": 256, "seed": 3 },
            "evaluation": { "path": "val.npz", "labels": "labels" }
          },
          "steps": [
            { "prune": { "sparsity": 0.5, "pattern": "2:4", "exclude": ["fc3", "Conv"] } },
            { "quantize": { "weights": "int8", "activations": "uint8", "calibration": "percentile", "percentile": 99.9 } },
            { "quantize": { "weights": "int4" } }
          ],
          "constraints": { "maxAccuracyDrop": 0.005, "minAgreement": 0.99 }
        }
        """);
        Assert.Equal(Path.Combine(Dir, "calib.npz"), spec.Calibration!.Path);
        Assert.Equal((256, 3), (spec.Calibration.Samples, spec.Calibration.Seed));
        Assert.Null(spec.Evaluation!.Metric); // by the judged output's kind
        var prune = Assert.IsType<PruneStep>(spec.Steps[0]);
        Assert.Equal((2, 4, "global"), (prune.N, prune.M, prune.Scope));
        Assert.Equal(["fc3", "Conv"], prune.Exclude);
        Assert.Equal(["Conv", "Gemm", "MatMul"], prune.OpTypes);
        var q = Assert.IsType<QuantizeStep>(spec.Steps[1]);
        Assert.Equal(("static", "percentile", 99.9), (q.Scheme, q.Calibration, q.Percentile));
        Assert.Contains("Add", q.OpTypes);
        var int4 = Assert.IsType<QuantizeStep>(spec.Steps[2]);
        Assert.Equal(("weight-only", 32, true), (int4.Scheme, int4.BlockSize, int4.Symmetric));
        Assert.Equal(0.005, spec.Constraints.MaxAccuracyDrop);
        Assert.Equal((10, 7), (spec.Steps[1].Line, spec.Steps[1].Column));
    }

    /// <summary>Synthesised calibration: no path, its own defaults, and it satisfies the methods that need activations.</summary>
    [Fact]
    public void Synthesised_calibration_reads_with_defaults_and_is_not_a_data_file()
    {
        var spec = SpecFiles.Load(Dir, """
        {
          "data": { "calibration": { "synthesize": "batchnorm", "seed": 5 } },
          "steps": [ { "quantize": { "weights": "int8", "activations": "int8" } } ]
        }
        """);
        Assert.Null(spec.Calibration);
        Assert.Null(spec.Evaluation);
        var synthetic = spec.SyntheticCalibration!;
        Assert.Equal(("batchnorm", 64, 5, 100), (synthetic.Method, synthetic.Samples, synthetic.Seed, synthetic.Iterations));
        Assert.Equal((2, 28), (synthetic.Line, synthetic.Column));
    }

    [Fact]
    public void The_json_schema_lists_exactly_the_keys_the_reader_accepts()
    {
        using var schema = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(TestData.RepoRoot, "schemas", "compress-spec.schema.json")));
        var definitions = schema.RootElement.GetProperty("$defs");
        string[] Properties(System.Text.Json.JsonElement e) => e.GetProperty("properties").EnumerateObject().Select(p => p.Name).Order().ToArray();
        Assert.Equal(SpecReader.Keys["spec"].Order(), Properties(schema.RootElement));
        foreach (var (table, definition) in new[] { ("data", "data"), ("data.source", "dataSource"), ("data.synthetic", "syntheticData"), ("prune", "prune"), ("quantize", "quantize"), ("constraints", "constraints"), ("target", "target") })
        {
            Assert.Equal(SpecReader.Keys[table].Order(), Properties(definitions.GetProperty(definition)));
        }

        foreach (var (choice, values) in SpecReader.Choices)
        {
            var (definition, property) = (choice.Split('.')[0], choice.Split('.')[1]);
            var name = definition == "data" ? "dataSource" : definition;
            var element = definitions.GetProperty(name).GetProperty("properties").GetProperty(property);
            var listed = element.GetProperty("enum").EnumerateArray().Select(v => v.GetString()).ToArray();
            Assert.True(values.All(listed.Contains), $"{choice}: schema lists {string.Join(",", listed)}");
        }
    }
}
