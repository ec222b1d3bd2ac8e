using Compress.Core.Data;

namespace Compress.Core.Tests.TestSupport;

/// <summary>
/// Fashion-MNIST as .npz for the project's models (arrays <c>input</c> and <c>labels</c>), made once from Debian's
/// dataset-fashion-mnist into .cache/data: the full 10,000-image test set for evaluation and the first 2,048
/// training images for calibration.
/// </summary>
public static class FashionData
{
    private static readonly Lock Gate = new();

    public static string MlpModel => Path.Combine(TestData.RepoRoot, "models", "fashion_mlp.onnx");

    public static string CnnModel => Path.Combine(TestData.RepoRoot, "models", "fashion_cnn.onnx");

    public static string Test(bool image) => Make(image ? "fashion_test_image.npz" : "fashion_test_flat.npz", test: true, image, null);

    public static string Calibration(bool image) => Make(image ? "fashion_calib_image.npz" : "fashion_calib_flat.npz", test: false, image, 2048);

    /// <summary>The TorchScript fixtures' input: [n, 1, 28, 28] normalised as (p − 0.2860) / 0.3530 (tests/fixtures/torchscript/README.md).</summary>
    public static string Normalized(bool test) => Make(test ? "fashion_test_normalized.npz" : "fashion_calib_normalized.npz", test, image: true, test ? null : 2048, 0.2860f, 0.3530f);

    public static string TorchScriptFixture(string name) => Path.Combine(TestData.RepoRoot, "tests", "fixtures", "torchscript", name);

    private static string Make(string name, bool test, bool image, int? count, float mean = 0, float std = 1)
    {
        var path = Path.Combine(TestData.RepoRoot, ".cache", "data", name);
        lock (Gate)
        {
            if (!File.Exists(path))
            {
                FashionMnist.WriteNpz(path, test, image ? [1, 28, 28] : [784], count, mean, std);
            }
        }

        return path;
    }
}
