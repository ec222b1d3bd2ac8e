using Compress.Core.Calibration;
using Compress.Core.Data;
using Compress.Core.Onnx;
using Compress.Core.Passes;
using Compress.Core.Passes.Graph;
using Compress.Core.Passes.Pruning.Channels;
using Compress.Core.Tests.Passes.Pruning;
using Compress.Core.Tests.TestSupport;
using Compress.Core.Torch;
using Xunit.Abstractions;

namespace Compress.Core.Tests.RealModels;

/// <summary>
/// PP-OCRv4 det's head: the group of its last Conv (p2o.Conv.61, 24 channels) is read by a ConvTranspose (2×2, stride
/// 2). Cut alone at 25% with that ConvTranspose refitted on 48 of the 64 images, against the same channels cut with no
/// refit, both judged on the 16 images the refit did not see.
/// </summary>
public sealed class ConvTransposeDetTests(ITestOutputHelper output) : TempDirectoryTest
{
    [Fact]
    public void The_head_conv_group_cut_with_its_conv_transpose_refitted_beats_no_refit()
    {
        TorchRuntime.EnsureLoaded();
        var data = ThirdPartyModels.OcrLines("ocr_det_64x320.npz", 64, 320);
        var spec = SpecFiles.Load(Dir, $$"""
            { "data": { "calibration": { "path": {{SpecFiles.Quote(data)}}, "samples": 48 } },
              "steps": [ { "prune": { "method": "obs", "pattern": "channel", "scope": "layer", "sparsity": 0.25, "include": ["p2o.Conv.61"] } } ] }
            """);
        var model = OnnxModel.Load(ThirdPartyModels.OcrDet);
        GraphPreparation.Apply(model, []);
        var original = ChannelGroupTests.Clone(model);
        var context = new CompressionContext(model, spec, m => CalibrationSet.Load(spec.Calibration!, m, spec.File));
        PassRegistry.Create(spec.Steps[0]).Apply(context);
        output.WriteLine(string.Join("\n", context.Notes));

        var conv = original.Graph.Nodes.Single(n => n.Name == "p2o.Conv.61").Input[1];
        var up = original.Graph.Nodes.Single(n => n.Name == "p2o.ConvTranspose.0").Input[1];
        var before = original.ToTorch(original.Graph.GetInitializer(conv)!);
        var after = model.ToTorch(model.Graph.GetInitializer(conv)!);
        before = before.reshape(before.shape[0], -1);
        after = after.reshape(after.shape[0], -1);
        Assert.True(after.shape[0] < before.shape[0]);
        var kept = new List<long>();
        for (var i = 0; i < after.shape[0]; i++)
        {
            kept.Add(Enumerable.Range(0, (int)before.shape[0]).Select(c => (long)c).First(c => !kept.Contains(c) && before[c].eq(after[i]).all().item<bool>()));
        }

        var masked = ChannelGroupTests.Clone(original);
        ChannelGroupTests.Mask(masked, up, 0, ChannelSurgery.RemovedChannels(before.shape[0], kept), 1);
        var (values, shape) = HeldOut(data, model, context.Calibration.Inputs["x"]);
        var target = ChannelGroupTests.Run(original, "x", values, shape)[0];
        var refitted = ChannelGroupTests.Run(model, "x", values, shape)[0];
        var unfitted = ChannelGroupTests.Run(masked, "x", values, shape)[0];
        var (refitError, refitCosine) = Compare(refitted, target, (int)shape[0]);
        var (plainError, plainCosine) = Compare(unfitted, target, (int)shape[0]);
        output.WriteLine($"kept {string.Join(",", kept)}; refitted: mse {refitError:G4}, cosine {refitCosine:F4}; no refit: mse {plainError:G4}, cosine {plainCosine:F4}");
        Assert.True(refitError < plainError, $"refitted {refitError:G4} against {plainError:G4} with no refit");
    }

    /// <summary>The file's images that are not among the calibration's, stacked.</summary>
    private static (float[] Values, long[] Shape) HeldOut(string path, OnnxModel model, NpyArray calibration)
    {
        var all = CalibrationSet.Load(path, model, null, null, 0).Inputs["x"];
        var per = (int)(all.As<float>().Length / all.Shape[0]);
        var seen = calibration.As<float>();
        var kept = new List<float>();
        for (var i = 0; i < all.Shape[0]; i++)
        {
            var row = all.As<float>().Slice(i * per, per);
            var calibrated = false;
            for (var j = 0; j < calibration.Shape[0] && !calibrated; j++)
            {
                calibrated = row.SequenceEqual(seen.Slice(j * per, per));
            }

            if (!calibrated)
            {
                kept.AddRange(row.ToArray());
            }
        }

        var shape = all.Shape.ToArray();
        shape[0] = kept.Count / per;
        Assert.Equal(all.Shape[0] - calibration.Shape[0], shape[0]);
        return (kept.ToArray(), shape);
    }

    private static (double Error, double Cosine) Compare(float[] actual, float[] expected, int samples)
    {
        var per = expected.Length / samples;
        double error = 0, cosine = 0;
        for (var s = 0; s < samples; s++)
        {
            double dot = 0, aa = 0, ee = 0;
            for (var i = s * per; i < (s + 1) * per; i++)
            {
                var (a, e) = ((double)actual[i], (double)expected[i]);
                error += (a - e) * (a - e);
                (dot, aa, ee) = (dot + a * e, aa + a * a, ee + e * e);
            }

            cosine += dot / Math.Sqrt(aa * ee + 1e-30);
        }

        return (error / expected.Length, cosine / samples);
    }
}
