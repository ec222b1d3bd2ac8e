using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Compress.Core.Tests.TestSupport;
using Microsoft.ML.OnnxRuntime;
using Xunit.Abstractions;

namespace Compress.Core.Tests.Onnx;

/// <summary>
/// Every model of ONNX's own test suite (Debian's libonnx-testdata): read → write → read gives an equal
/// message, and ONNX Runtime's outputs for the written file are bit-identical to the original's on the
/// inputs the suite ships (or both files are refused alike, where ONNX Runtime cannot run the model).
/// </summary>
public sealed class OnnxTestDataRoundTripTests(ITestOutputHelper output)
{
    public static TheoryData<string> Suites => new() { "node", "pytorch-converted", "pytorch-operator", "simple" }; // "real" ships only download links

    [Theory]
    [MemberData(nameof(Suites))]
    public void Written_models_equal_the_originals_and_run_bit_identically(string suite)
    {
        var tally = new Dictionary<string, int>();
        var failures = new List<string>();
        var models = Directory.GetDirectories(Path.Combine(TestData.OnnxNodeTests, suite))
            .Select(d => Path.Combine(d, "model.onnx")).Where(File.Exists).Order(StringComparer.Ordinal).ToList();
        var temp = TestData.NewTempDirectory();
        try
        {
            foreach (var model in models)
            {
                try
                {
                    var outcome = RoundTrip(model, Path.Combine(temp, Path.GetFileName(Path.GetDirectoryName(model))!));
                    tally[outcome] = tally.GetValueOrDefault(outcome) + 1;
                }
                catch (Exception e)
                {
                    failures.Add($"{model}: {e.Message}");
                }
            }
        }
        finally
        {
            Directory.Delete(temp, recursive: true);
        }

        output.WriteLine($"{suite}: {models.Count} models; " + string.Join("; ", tally.OrderBy(t => t.Key).Select(t => $"{t.Key}: {t.Value}")));
        Assert.NotEmpty(models);
        Assert.True(failures.Count == 0, $"{failures.Count} of {models.Count} models failed:\n" + string.Join("\n", failures.Take(40)));
    }

    private static string RoundTrip(string modelPath, string outputDirectory)
    {
        var original = OnnxModel.Load(modelPath);
        var writtenPath = Path.Combine(outputDirectory, "model.onnx");
        original.Save(writtenPath);
        var reread = OnnxModel.Load(writtenPath);
        if (!reread.Proto.Equals(original.Proto))
        {
            throw new InvalidOperationException("the re-read message differs from the original");
        }

        var sameBytes = File.ReadAllBytes(modelPath).AsSpan().SequenceEqual(File.ReadAllBytes(writtenPath));
        var suffix = sameBytes ? " (file byte-identical)" : " (file re-encoded)";

        InferenceSession originalSession;
        try
        {
            originalSession = OrtHarness.Open(modelPath);
        }
        catch (OnnxRuntimeException refused)
        {
            var writtenRefusal = Assert.Throws<OnnxRuntimeException>(() => OrtHarness.Open(writtenPath).Dispose());
            Assert.Equal(Normalize(refused.Message, modelPath), Normalize(writtenRefusal.Message, writtenPath));
            return "refused alike by ONNX Runtime" + suffix;
        }

        using (originalSession)
        using (var writtenSession = OrtHarness.Open(writtenPath))
        {
            var inputs = ReadInputs(original, Path.Combine(Path.GetDirectoryName(modelPath)!, "test_data_set_0"));
            if (inputs is null)
            {
                return "loaded alike, inputs not tensors or sequences" + suffix;
            }

            try
            {
                IReadOnlyList<byte[]> expected;
                try
                {
                    expected = OrtHarness.Run(originalSession, inputs);
                }
                catch (OnnxRuntimeException failed)
                {
                    var writtenFailure = Assert.Throws<OnnxRuntimeException>(() => OrtHarness.Run(writtenSession, inputs));
                    Assert.Equal(Normalize(failed.Message, modelPath), Normalize(writtenFailure.Message, writtenPath));
                    return "run fails alike" + suffix;
                }

                var again = OrtHarness.Run(originalSession, inputs);
                var actual = OrtHarness.Run(writtenSession, inputs);
                if (!SameOutputs(expected, again))
                {
                    // Random* and similar ops differ between two runs of the same file: compare structure only.
                    Assert.Equal(expected.Count, actual.Count);
                    return "ran, nondeterministic op (output count compared)" + suffix;
                }

                if (!SameOutputs(expected, actual))
                {
                    throw new InvalidOperationException("ONNX Runtime outputs differ between original and written model");
                }

                return "ran, outputs bit-identical" + suffix;
            }
            finally
            {
                foreach (var value in inputs.Values)
                {
                    value.Dispose();
                }
            }
        }
    }

    private static Dictionary<string, OrtValue>? ReadInputs(OnnxModel model, string dataSet)
    {
        var graph = model.Proto.Graph;
        var initializers = new HashSet<string>(graph.Initializer.Select(i => i.Name));
        var declared = graph.Input.Where(i => !initializers.Contains(i.Name)).ToList();
        var files = Directory.Exists(dataSet)
            ? Directory.GetFiles(dataSet, "input_*.pb").OrderBy(f => int.Parse(Path.GetFileNameWithoutExtension(f)["input_".Length..])).ToList()
            : [];
        var inputs = new Dictionary<string, OrtValue>();
        for (var i = 0; i < files.Count && i < declared.Count; i++)
        {
            var bytes = File.ReadAllBytes(files[i]);
            switch (declared[i].Type?.ValueCase)
            {
                case TypeProto.ValueOneofCase.TensorType:
                    var tensor = TensorProto.Parser.ParseFrom(bytes);
                    inputs[declared[i].Name] = OrtHarness.FromTensorProto(tensor);
                    break;
                case TypeProto.ValueOneofCase.SequenceType when declared[i].Type.SequenceType.ElemType?.ValueCase == TypeProto.ValueOneofCase.TensorType
                                                                 && SequenceProto.Parser.ParseFrom(bytes) is { TensorValues.Count: > 0 } sequence:
                    // ONNX Runtime's C# API cannot build an empty sequence; those models count as not fed.
                    inputs[declared[i].Name] = OrtHarness.FromSequence(sequence);
                    break;
                default:
                    foreach (var v in inputs.Values)
                    {
                        v.Dispose();
                    }

                    return null;
            }
        }

        return inputs;
    }

    private static bool SameOutputs(IReadOnlyList<byte[]> a, IReadOnlyList<byte[]> b) =>
        a.Count == b.Count && a.Zip(b).All(p => p.First.AsSpan().SequenceEqual(p.Second));

    private static string Normalize(string message, string path) =>
        message.Replace(path, "<model>").Replace(Path.GetDirectoryName(path)!, "<dir>");
}
