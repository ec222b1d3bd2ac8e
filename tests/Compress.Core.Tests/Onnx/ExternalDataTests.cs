using System.Security.Cryptography;
using Compress.Core.Diagnostics;
using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Tests.TestSupport;
using Microsoft.ML.OnnxRuntime;

namespace Compress.Core.Tests.Onnx;

public sealed class ExternalDataTests : TempDirectoryTest
{
    [Fact]
    public void Always_mode_moves_large_tensors_out_and_runs_identically()
    {
        var model = Models.Dense();
        var embedded = Path.Combine(Dir, "embedded.onnx");
        var external = Path.Combine(Dir, "ext", "model.onnx");
        model.Save(embedded);
        var before = model.Proto.Clone();
        model.Save(external, new OnnxWriteOptions { ExternalData = ExternalDataMode.Always });

        Assert.Equal(before, model.Proto); // the in-memory model is unchanged by the write
        Assert.True(File.Exists(external + ".data"));
        Assert.True(new FileInfo(external).Length < 1024, "the weight should have left the model file");
        var reread = OnnxModel.Load(external);
        var w = reread.Graph.GetInitializer("W")!;
        Assert.True(ExternalDataReference.IsExternal(w));
        Assert.Equal(0, reread.ExternalData[w].Offset % 4096);
        Assert.False(ExternalDataReference.IsExternal(reread.Graph.GetInitializer("b")!)); // 128 bytes: under the threshold
        using (var data = reread.OpenTensorData(w))
        {
            Assert.True(data.Span.SequenceEqual(model.Graph.GetInitializer("W")!.RawData.Span));
        }

        AssertSameOutputs(embedded, external);
    }

    [Fact]
    public void Auto_mode_moves_data_out_when_the_model_exceeds_the_embedded_limit()
    {
        var model = Models.Dense();
        var path = Path.Combine(Dir, "auto.onnx");
        model.Save(path, new OnnxWriteOptions { MaxEmbeddedBytes = 4096 }); // stands in for protobuf's 2 GB
        var reread = OnnxModel.Load(path);
        Assert.Single(reread.ExternalData);
        Assert.True(ExternalDataReference.IsExternal(reread.Graph.GetInitializer("W")!));

        model.Save(Path.Combine(Dir, "small.onnx"));
        Assert.False(File.Exists(Path.Combine(Dir, "small.onnx.data")));
    }

    [Fact]
    public void External_data_is_copied_when_saving_elsewhere_and_the_source_is_untouched()
    {
        var source = Path.Combine(Dir, "src", "model.onnx");
        Models.Dense().Save(source, new OnnxWriteOptions { ExternalData = ExternalDataMode.Always });
        var hashes = HashFolder(Path.GetDirectoryName(source)!);

        var model = OnnxModel.Load(source);
        var copy = Path.Combine(Dir, "copy", "renamed.onnx");
        model.Save(copy);
        Assert.True(File.Exists(copy + ".data"));
        Assert.Equal(hashes, HashFolder(Path.GetDirectoryName(source)!));
        AssertSameOutputs(source, copy);

        var inlined = Path.Combine(Dir, "inlined.onnx");
        model.Save(inlined, new OnnxWriteOptions { ExternalData = ExternalDataMode.Never });
        Assert.False(File.Exists(inlined + ".data"));
        Assert.Empty(OnnxModel.Load(inlined).ExternalData);
        Assert.True(ExternalDataReference.IsExternal(model.Graph.GetInitializer("W")!)); // restored after the write
        AssertSameOutputs(source, inlined);
    }

    [Fact]
    public void Saving_over_its_own_file_keeps_the_data_readable()
    {
        var path = Path.Combine(Dir, "self.onnx");
        Models.Dense().Save(path, new OnnxWriteOptions { ExternalData = ExternalDataMode.Always });
        var reference = Path.Combine(Dir, "reference.onnx");
        Models.Dense().Save(reference);
        OnnxModel.Load(path).Save(path);
        AssertSameOutputs(reference, path);
    }

    [Theory]
    [InlineData("../secret.bin", "climbs out")]
    [InlineData("sub/../../secret.bin", "climbs out")]
    [InlineData("/SECRET_ABSOLUTE", "absolute")]
    public void Locations_outside_the_model_folder_are_refused_before_any_read(string location, string why)
    {
        // The target is a FIFO: opening it for reading would block, so a reader that touched it would hang the test.
        var modelDir = Path.Combine(Dir, "m");
        Directory.CreateDirectory(modelDir);
        var fifo = Path.Combine(Dir, "secret.bin");
        MakeFifo(fifo);
        location = location.Replace("/SECRET_ABSOLUTE", fifo);
        var path = WriteModelWithLocation(modelDir, location);

        var e = LoadWithTimeout(path);
        Assert.Equal(DiagnosticCodes.ExternalDataUnsafePath, e.Diagnostic.Code);
        Assert.Contains(why, e.Message);
        Assert.Equal(path, e.Diagnostic.File);
    }

    [Fact]
    public void Etc_passwd_is_never_reached()
    {
        var modelDir = Path.Combine(Dir, "deep", "er");
        Directory.CreateDirectory(modelDir);
        foreach (var location in new[] { "../../etc/passwd", "../../../../../../../../etc/passwd", "/etc/passwd" })
        {
            var e = LoadWithTimeout(WriteModelWithLocation(modelDir, location));
            Assert.Equal(DiagnosticCodes.ExternalDataUnsafePath, e.Diagnostic.Code);
        }
    }

    [Fact]
    public void A_link_inside_the_folder_that_leads_out_is_refused()
    {
        var modelDir = Path.Combine(Dir, "linked");
        Directory.CreateDirectory(modelDir);
        var fifo = Path.Combine(Dir, "outside.bin");
        MakeFifo(fifo);
        File.CreateSymbolicLink(Path.Combine(modelDir, "weights.bin"), fifo);
        var e = LoadWithTimeout(WriteModelWithLocation(modelDir, "weights.bin"));
        Assert.Equal(DiagnosticCodes.ExternalDataUnsafePath, e.Diagnostic.Code);
        Assert.Contains("link", e.Message);
    }

    [Theory]
    [InlineData("missing.bin", null, null, "does not exist")]
    [InlineData("w.bin", "9999999", null, "has only")]
    [InlineData("w.bin", "abc", null, "not a non-negative integer")]
    [InlineData("w.bin", "-4", null, "not a non-negative integer")]
    [InlineData("w.bin", "0", "12", "needs 8192 bytes")]
    public void Bad_offsets_lengths_and_missing_files_are_CMP0005(string location, string? offset, string? length, string message)
    {
        var modelDir = Path.Combine(Dir, "bad");
        Directory.CreateDirectory(modelDir);
        File.WriteAllBytes(Path.Combine(modelDir, "w.bin"), new byte[8192]);
        var path = WriteModelWithLocation(modelDir, location, offset, length);
        var e = Assert.Throws<CompressException>(() => OnnxModel.Load(path));
        Assert.Equal(DiagnosticCodes.ExternalDataInvalid, e.Diagnostic.Code);
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void A_failed_write_leaves_no_partial_files()
    {
        var target = Path.Combine(Dir, "target.onnx");
        Directory.CreateDirectory(target); // a folder where the file should go: the final move fails
        var e = Assert.Throws<CompressException>(() => Models.Dense().Save(target, new OnnxWriteOptions { ExternalData = ExternalDataMode.Always }));
        Assert.Equal(DiagnosticCodes.ModelWriteFailed, e.Diagnostic.Code);
        Assert.Empty(Directory.GetFiles(Dir, "*.tmp", SearchOption.AllDirectories));
    }

    private static string WriteModelWithLocation(string modelDir, string location, string? offset = null, string? length = null)
    {
        var model = Models.Dense();
        var w = model.Graph.GetInitializer("W")!;
        w.ClearRawData();
        w.DataLocation = TensorProto.Types.DataLocation.External;
        w.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = location });
        if (offset is not null)
        {
            w.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = offset });
        }

        if (length is not null)
        {
            w.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = length });
        }

        // Written as bytes: the writer itself (rightly) cannot save a tensor whose data it cannot locate.
        var path = Path.Combine(modelDir, $"model-{Guid.NewGuid():N}.onnx");
        File.WriteAllBytes(path, Google.Protobuf.MessageExtensions.ToByteArray(model.Proto));
        return path;
    }

    private static CompressException LoadWithTimeout(string path)
    {
        var load = Task.Run(() => Assert.Throws<CompressException>(() => OnnxModel.Load(path)));
        Assert.True(load.Wait(TimeSpan.FromSeconds(30)), "loading blocked: the reader opened the target outside the folder");
        return load.Result;
    }

    private static void MakeFifo(string path)
    {
        using var mkfifo = System.Diagnostics.Process.Start("mkfifo", path);
        mkfifo.WaitForExit();
        Assert.Equal(0, mkfifo.ExitCode);
    }

    private static void AssertSameOutputs(string expectedModel, string actualModel)
    {
        using var a = OrtHarness.Open(expectedModel);
        using var b = OrtHarness.Open(actualModel);
        using var x = OrtValue.CreateTensorValueFromMemory(Models.RandomInput(3 * 64, 7), [3, 64]);
        var feeds = new Dictionary<string, OrtValue> { ["x"] = x };
        var expected = OrtHarness.Run(a, feeds);
        var actual = OrtHarness.Run(b, feeds);
        Assert.True(expected[0].AsSpan().SequenceEqual(actual[0]));
    }

    private static Dictionary<string, string> HashFolder(string folder) =>
        Directory.GetFiles(folder).ToDictionary(f => Path.GetFileName(f), f => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(f))));
}
