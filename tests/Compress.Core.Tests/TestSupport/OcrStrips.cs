using Compress.Core.Data;
using SkiaSharp;

namespace Compress.Core.Tests.TestSupport;

/// <summary>
/// Inputs for PP-OCRv4 recognition ([n, 3, 48, 320], normalised as (v/255 − 0.5)/0.5): lines of printed text —
/// seeded random words of letters and digits rendered in DejaVu Sans (Debian's fonts-dejavu-core), dark on light,
/// so the model reads real glyphs and its per-time-step predictions are meaningful.
/// </summary>
public static class OcrStrips
{
    private const string FontPath = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
    private const string Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    private static readonly Lock Gate = new();

    public static string Make(string name, int count, int seed)
    {
        var path = Path.Combine(TestData.RepoRoot, ".cache", "data", name);
        lock (Gate)
        {
            if (File.Exists(path))
            {
                return path;
            }

            if (!File.Exists(FontPath))
            {
                throw new InvalidOperationException($"{FontPath} not found: install fonts-dejavu-core (./build.sh setup)");
            }

            const int height = 48, width = 320;
            var random = new Random(seed);
            var data = new float[count * 3 * height * width];
            using var typeface = SKTypeface.FromFile(FontPath);
            using var paint = new SKPaint { Color = SKColors.Black, IsAntialias = true, Typeface = typeface, TextSize = 30 };
            for (var s = 0; s < count; s++)
            {
                var words = Enumerable.Range(0, random.Next(1, 4))
                    .Select(_ => new string(Enumerable.Range(0, random.Next(2, 7)).Select(_ => Alphabet[random.Next(Alphabet.Length)]).ToArray()));
                var text = string.Join(" ", words);
                using var bitmap = new SKBitmap(width, height, SKColorType.Gray8, SKAlphaType.Opaque);
                using (var canvas = new SKCanvas(bitmap))
                {
                    canvas.Clear(SKColors.White);
                    canvas.DrawText(text, 4, 35, paint);
                }

                var pixels = bitmap.GetPixelSpan();
                for (var i = 0; i < height * width; i++)
                {
                    var v = (pixels[i] / 255f - 0.5f) / 0.5f;
                    for (var c = 0; c < 3; c++)
                    {
                        data[(s * 3 + c) * height * width + i] = v;
                    }
                }
            }

            ArrayFile.Write(path, NpyArray.Create("x", data, count, 3, height, width));
        }

        return path;
    }
}
