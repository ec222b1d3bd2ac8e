using Compress.Spec;
using Compress.Spec.Manifest;

namespace Compress.Core.Tests.Contracts;

public sealed class ManifestAndInlineSpecTests
{
    [Fact]
    public void A_manifest_survives_write_and_read_and_writes_the_same_bytes_again()
    {
        var manifest = new ModelManifest
        {
            Name = "Classifier", Namespace = "App.Models", Source = "/p/m.onnx", Spec = null, ArtifactPath = "Models/m.onnx",
            ArtifactSha256 = "ab", Compressed = true, Compression = new ManifestCompression { OriginalBytes = 10, CompressedBytes = 3, Agreement = 0.99, Samples = 100 },
        };
        manifest.Inputs.Add(new ManifestValue { Name = "input \"1\"", ElementType = "float16", Shape = [new(null, "batch"), new(3, null), new(null, null)] });
        manifest.Outputs.Add(new ManifestValue { Name = "out", ElementType = "int64", Shape = null });
        manifest.Opsets.Add(new ManifestOpset("ai.onnx", 17));
        var op = new ManifestOperator { Op = "QLinearConv", Count = 2 };
        op.ElementTypes.AddRange(["int8", "uint8"]);
        manifest.Operators.Add(op);
        manifest.Compression.Steps.Add("quantize/static");

        var text = ManifestJson.Write(manifest);
        var read = ManifestJson.Read(text, "m.json");
        Assert.Equal(text, ManifestJson.Write(read));
        Assert.Equal("input \"1\"", read.Inputs[0].Name);
        Assert.Equal(["batch", "3", "?"], read.Inputs[0].Shape!.Select(d => d.ToString()));
        Assert.Null(read.Outputs[0].Shape);
        Assert.Null(read.Compression!.OriginalAccuracy);
        Assert.Equal(0.99, read.Compression.Agreement);
    }

    [Theory]
    [InlineData("{ \"version\": 1, ", 1, "not valid JSON")]
    [InlineData("{ \"version\": 2, \"name\": \"A\" }", 1, "version 2 is not supported")]
    [InlineData("{ \"version\": 1,\n  \"name\": 5 }", 2, "'name' must be a string")]
    [InlineData("{ \"version\": 1, \"name\": \"A\", \"artifactPath\": \"a\", \"inputs\": [], \"outputs\": [ { \"name\": \"y\" } ] }", 1, "lacks 'elementType'")]
    public void A_malformed_manifest_is_CMP1001_at_its_line(string text, int line, string message)
    {
        var e = Assert.Throws<SpecException>(() => ManifestJson.Read(text, "m.json"));
        Assert.Equal(ManifestJson.MalformedCode, e.Code);
        Assert.Equal(line, e.Line);
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("fashion_mlp.onnx", "FashionMlp")]
    [InlineData("Models/ch_PP-OCRv4_rec_infer.onnx", "ChPPOCRv4RecInfer")]
    [InlineData("3d-unet.onnx", "Model3dUnet")]
    [InlineData("---.onnx", "Model")]
    public void Wrapper_names_are_pascal_case_identifiers(string file, string expected) =>
        Assert.Equal(expected, WrapperNames.FromFileName(file));

    [Fact]
    public void Inline_metadata_becomes_a_spec_the_engine_reads_as_written()
    {
        var text = InlineSpec.Build(new Dictionary<string, string>
        {
            ["Quantize"] = "int8", ["Sparsity"] = "0.5", ["CalibrationData"] = "data/c.npz", ["CalibrationSamples"] = "256",
            ["EvaluationData"] = "data/t.npz", ["Labels"] = "labels", ["MaxAccuracyDrop"] = "0.01",
        }, "/project", "/project/App.csproj");
        var spec = SpecReader.Read(text, "/project/obj/inline.json", checkFiles: false);
        Assert.Equal("/project/data/c.npz", spec.Calibration!.Path);
        Assert.Equal(256, spec.Calibration.Samples);
        Assert.Equal("labels", spec.Evaluation!.Labels);
        Assert.Equal(0.01, spec.Constraints.MaxAccuracyDrop);
        var prune = Assert.IsType<PruneStep>(spec.Steps[0]);
        Assert.Equal(0.5, prune.Sparsity);
        Assert.Equal("global", prune.Scope);
        var quantize = Assert.IsType<QuantizeStep>(spec.Steps[1]);
        Assert.Equal(("int8", "uint8"), (quantize.Weights, quantize.Activations));

        foreach (var choice in InlineSpec.QuantizeChoices.Keys)
        {
            var metadata = new Dictionary<string, string> { ["Quantize"] = choice, ["CalibrationData"] = "c.npz" };
            SpecReader.Read(InlineSpec.Build(metadata, "/p", "/p/App.csproj"), "inline.json", checkFiles: false);
        }
    }

    [Theory]
    [InlineData("Quantize=int9", "is not one of")]
    [InlineData("Quantize=int8", "needs CalibrationData")]
    [InlineData("Sparsity=1", "strictly between 0 and 1")]
    [InlineData("Sparsity=half", "strictly between 0 and 1")]
    [InlineData("Quantize=fp16;MaxAccuracyDrop=-1", "from 0 to 1")]
    [InlineData("Quantize=fp16;CalibrationData=c.npz;CalibrationSamples=0", "positive whole number")]
    [InlineData("Labels=labels", "needs Quantize or Sparsity")]
    public void Invalid_inline_metadata_is_CMP0109_at_the_project(string pairs, string message)
    {
        var metadata = pairs.Split(';').Select(p => p.Split('=')).ToDictionary(p => p[0], p => p[1]);
        var e = Assert.Throws<SpecException>(() => InlineSpec.Build(metadata, "/p", "/p/App.csproj"));
        Assert.Equal(BuildCodes.InlineInvalid, e.Code);
        Assert.Equal("/p/App.csproj", e.File);
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }
}
