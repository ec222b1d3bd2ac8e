using Compress.Core.Onnx;
using Compress.Core.Packing;
using Compress.Core.Tests.TestSupport;
using Compress.Runtime.Packing;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Core.Tests.Packing;

/// <summary>The packed artifact: exact round trip, same bytes twice, bit-identical outputs, and every damaged file refused.</summary>
public sealed class PackedModelTests : TempDirectoryTest
{
    [Fact]
    public void Expands_to_the_same_weights_and_bit_identical_outputs()
    {
        var model = SharedModel();
        var packed = PackedArtifact.Pack(model, "test.cpack");
        var expanded = PackedModel.Expand(packed);
        var proto = Compress.Core.Onnx.Proto.ModelProto.Parser.ParseFrom(expanded);
        foreach (var tensor in model.Proto.Graph.Initializer)
        {
            Assert.Equal(tensor.RawData.ToByteArray(), proto.Graph.Initializer.Single(t => t.Name == tensor.Name).RawData.ToByteArray());
        }

        Assert.Equal(Run(model.Proto.ToByteArray()), Run(expanded));
        Assert.True(packed.Length < model.Proto.CalculateSize() / 4, $"{packed.Length} bytes packed, {model.Proto.CalculateSize()} unpacked");
    }

    [Fact]
    public void The_same_model_packs_to_the_same_bytes()
    {
        Assert.Equal(PackedArtifact.Pack(SharedModel(), "a.cpack"), PackedArtifact.Pack(SharedModel(), "b.cpack"));
    }

    [Fact]
    public void The_onnx_only_form_gives_bit_identical_outputs()
    {
        var model = SharedModel();
        var gather = PackedArtifact.GatherForm(model, "test.onnx");
        Assert.Contains(gather.Graph.Node, n => n.OpType == "Gather");
        Assert.DoesNotContain(gather.Graph.Initializer, t => t.Name == "W");
        Assert.Equal(Run(model.Proto.ToByteArray()), Run(gather.ToByteArray()));
    }

    /// <summary>
    /// A quantized model (int8 weights behind DequantizeLinear, a uint8 weight with zero point 128), as a quantize step
    /// before <c>pack</c> leaves it: expansion gives back its int8/uint8 initializers byte for byte with their element
    /// types (the forms ONNX Runtime runs with its integer kernels; they travel in the Brotli-compressed graph), and
    /// ONNX Runtime's outputs are bit-identical.
    /// </summary>
    [Fact]
    public void A_quantized_model_expands_to_its_int8_and_uint8_weights_exactly()
    {
        var model = QuantizedModel();
        var packed = PackedArtifact.Pack(model, "test.cpack");
        var expanded = PackedModel.Expand(packed);
        var proto = Compress.Core.Onnx.Proto.ModelProto.Parser.ParseFrom(expanded);
        foreach (var name in new[] { "Wq", "Vq" })
        {
            var original = model.Proto.Graph.Initializer.Single(t => t.Name == name);
            var back = proto.Graph.Initializer.Single(t => t.Name == name);
            Assert.Equal(original.DataType, back.DataType);
            Assert.Equal(original.Dims, back.Dims);
            Assert.Equal(original.RawData.ToByteArray(), back.RawData.ToByteArray());
        }

        Assert.Equal((int)DataType.Int8, proto.Graph.Initializer.Single(t => t.Name == "Wq").DataType);
        Assert.Equal((int)DataType.Uint8, proto.Graph.Initializer.Single(t => t.Name == "Vq").DataType);
        Assert.Equal(Run(model.Proto.ToByteArray()), Run(expanded));
        Assert.Equal(packed, PackedArtifact.Pack(QuantizedModel(), "again.cpack"));
        Assert.True(packed.Length < model.Proto.CalculateSize() * 0.8, $"{packed.Length} bytes packed, {model.Proto.CalculateSize()} unpacked");
    }

    /// <summary>Every single-bit flip (header and a spread of payload offsets) and every truncation is a PackedModelException.</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Fuzzed_files_are_refused_with_a_clear_error_every_time(bool quantized)
    {
        var packed = PackedArtifact.Pack(quantized ? QuantizedModel() : SharedModel(), "test.cpack");
        var random = new Random(18);
        var offsets = Enumerable.Range(0, PackedModel.HeaderBytes + 64).Concat(Enumerable.Range(0, 400).Select(_ => random.Next(packed.Length))).Append(packed.Length - 1).Distinct().ToList();
        var refused = 0;
        foreach (var offset in offsets)
        {
            for (var bit = 0; bit < 8; bit += 3)
            {
                var damaged = (byte[])packed.Clone();
                damaged[offset] ^= (byte)(1 << bit);
                var error = Assert.Throws<PackedModelException>(() => PackedModel.Expand(damaged, "fuzz.cpack"));
                Assert.StartsWith("fuzz.cpack is ", error.Message, StringComparison.Ordinal);
                refused++;
            }
        }

        for (var length = 0; length < packed.Length; length += Math.Max(1, length / 8))
        {
            var error = Assert.Throws<PackedModelException>(() => PackedModel.Expand(packed.AsSpan(0, length), "fuzz.cpack"));
            Assert.Matches("not a packed model|truncated", error.Message);
            refused++;
        }

        Assert.True(refused > 1000, $"{refused} damaged files");
    }

    [Fact]
    public void Random_payloads_with_a_valid_header_and_checksum_are_refused()
    {
        // What the checksum cannot catch: a well-formed header over nonsense. The records' own checks must hold.
        var random = new Random(7);
        for (var i = 0; i < 300; i++)
        {
            var payload = new byte[random.Next(0, 200)];
            random.NextBytes(payload);
            var file = new byte[PackedModel.HeaderBytes + payload.Length];
            "CPAK"u8.CopyTo(file);
            BitConverter.TryWriteBytes(file.AsSpan(4), (ushort)1);
            BitConverter.TryWriteBytes(file.AsSpan(8), (uint)payload.Length);
            BitConverter.TryWriteBytes(file.AsSpan(12), Crc32.Compute(payload));
            payload.CopyTo(file, PackedModel.HeaderBytes);
            Assert.Throws<PackedModelException>(() => PackedModel.Expand(file, "random.cpack"));
        }
    }

    [Fact]
    public void A_newer_version_names_both_versions()
    {
        var packed = PackedArtifact.Pack(SharedModel(), "test.cpack");
        packed[4] = 2;
        var error = Assert.Throws<PackedModelException>(() => PackedModel.Expand(packed, "new.cpack"));
        Assert.Contains("version 2", error.Message, StringComparison.Ordinal);
        Assert.Contains("reads version 1", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_engine_reads_a_packed_file_and_names_a_corrupt_one()
    {
        var path = Path.Combine(Dir, "model.cpack");
        var packed = PackedArtifact.Pack(SharedModel(), path);
        File.WriteAllBytes(path, packed);
        Assert.Equal(3, OnnxModel.Load(path).Proto.Graph.Node.Count);
        packed[^3] ^= 0x10;
        File.WriteAllBytes(path, packed);
        var error = Assert.Throws<Compress.Core.Diagnostics.CompressException>(() => OnnxModel.Load(path));
        Assert.Equal("CMP0060", error.Diagnostic.Code);
    }

    [Fact]
    public void The_runtime_opens_a_packed_file_as_a_session_and_refuses_a_damaged_one()
    {
        var path = Path.Combine(Dir, "model.cpack");
        var packed = PackedArtifact.Pack(SharedModel(), path);
        File.WriteAllBytes(path, packed);
        using (var session = Compress.Runtime.ModelSessions.Create(path, null))
        {
            Assert.Equal(["y"], session.OutputNames);
        }

        File.WriteAllBytes(path, packed.AsSpan(0, packed.Length / 2).ToArray());
        var error = Assert.Throws<PackedModelException>(() => Compress.Runtime.ModelSessions.Create(path, null));
        Assert.Contains("truncated", error.Message, StringComparison.Ordinal);
    }

    /// <summary>y = relu(x·W + b), W [64, 32] drawn from 16 shared values with half its weights pruned.</summary>
    internal static OnnxModel SharedModel()
    {
        var random = new Random(3);
        var codebook = Enumerable.Range(0, 16).Select(i => (i - 7.5f) / 10f).ToArray();
        var w = Enumerable.Range(0, 64 * 32).Select(_ => random.NextDouble() < 0.5 ? 0f : codebook[random.Next(16)]).ToArray();
        var b = Enumerable.Range(0, 32).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray();
        return new GraphBuilder("shared")
            .Input("x", DataType.Float, "batch", 64)
            .Initializer("W", w, 64, 32)
            .Initializer("b", b, 32)
            .Node("MatMul", ["x", "W"], ["xw"], "matmul")
            .Node("Add", ["xw", "b"], ["z"], "add")
            .Node("Relu", ["z"], ["y"], "relu")
            .Output("y", DataType.Float, "batch", 32)
            .Build();
    }

    /// <summary>
    /// y = relu(x·DQ(Wq) + b)·DQ(Vq): Wq [64, 128] int8 (per-tensor scale, 60 % zeros, the rest in −40..40), Vq [128, 32]
    /// uint8 with zero point 128 (half its weights at the zero point).
    /// </summary>
    internal static OnnxModel QuantizedModel()
    {
        var random = new Random(11);
        var w = Enumerable.Range(0, 64 * 128).Select(_ => random.NextDouble() < 0.6 ? (sbyte)0 : (sbyte)random.Next(-40, 41)).ToArray();
        var v = Enumerable.Range(0, 128 * 32).Select(_ => random.NextDouble() < 0.5 ? (byte)128 : (byte)random.Next(0, 256)).ToArray();
        var b = Enumerable.Range(0, 128).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray();
        return new GraphBuilder("quantized")
            .Opset("", 13)
            .Input("x", DataType.Float, "batch", 64)
            .Initializer("Wq", w, 64, 128)
            .Initializer(OnnxTensors.Scalar("Ws", 0.01f))
            .Initializer(OnnxTensors.Scalar("Wz", (sbyte)0))
            .Initializer("Vq", v, 128, 32)
            .Initializer(OnnxTensors.Scalar("Vs", 0.02f))
            .Initializer(OnnxTensors.Scalar("Vz", (byte)128))
            .Initializer("b", b, 128)
            .Node("DequantizeLinear", ["Wq", "Ws", "Wz"], ["W"], "dq_w")
            .Node("DequantizeLinear", ["Vq", "Vs", "Vz"], ["V"], "dq_v")
            .Node("MatMul", ["x", "W"], ["xw"], "matmul")
            .Node("Add", ["xw", "b"], ["z"], "add")
            .Node("Relu", ["z"], ["h"], "relu")
            .Node("MatMul", ["h", "V"], ["y"], "matmul2")
            .Output("y", DataType.Float, "batch", 32)
            .Build();
    }

    private static byte[] Run(byte[] model)
    {
        using var options = new SessionOptions { IntraOpNumThreads = 1, LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
        using var session = new InferenceSession(model, options);
        var x = Models.RandomInput(8 * 64, 5);
        using var input = OrtValue.CreateTensorValueFromMemory(x, [8, 64]);
        using var results = session.Run(new RunOptions(), ["x"], [input], ["y"]);
        return System.Runtime.InteropServices.MemoryMarshal.AsBytes(results[0].GetTensorDataAsSpan<float>()).ToArray();
    }
}
