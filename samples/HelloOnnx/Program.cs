// A tour of Compress.Core on real data: build a nearest-centroid Fashion-MNIST classifier as an ONNX graph
// (logits = x·Cᵀ − ½‖c‖², weights computed from the 60,000 training images), write it with external data,
// read it back, inspect it, compress it to int8 with a spec (calibrated on 512 training images, checked on the
// 10,000 test images), and run the compressed model in ONNX Runtime. The MSBuild task will do the compression
// step inside `dotnet build` from a <CompressModel> item.
using Compress.Core;
using Compress.Core.Inspection;
using Compress.Core.Spec;
using Compress.Core.Onnx;
using Compress.Core.Data;
using Compress.Core.Evaluation;
using Microsoft.ML.OnnxRuntime;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

var train = FashionMnist.Images(FashionMnist.TrainImages, out var trainCount);
var trainLabels = FashionMnist.Labels(FashionMnist.TrainLabels);
var centroids = new float[10 * 784];
var counts = new int[10];
for (var i = 0; i < trainCount; i++)
{
    var c = trainLabels[i];
    counts[c]++;
    for (var p = 0; p < 784; p++)
    {
        centroids[c * 784 + p] += train[i * 784 + p];
    }
}

var bias = new float[10];
for (var c = 0; c < 10; c++)
{
    for (var p = 0; p < 784; p++)
    {
        centroids[c * 784 + p] /= counts[c];
        bias[c] -= 0.5f * centroids[c * 784 + p] * centroids[c * 784 + p];
    }
}

var model = new GraphBuilder("fashion_centroids")
    .Input("input", DataType.Float, "batch", 784)
    .Initializer("centroids", centroids, 10, 784)
    .Initializer("bias", bias, 10)
    .Node("Gemm", ["input", "centroids", "bias"], ["logits"], "classifier", "", OnnxAttribute.Int("transB", 1))
    .Output("logits", DataType.Float, "batch", 10)
    .Build();

var folder = Path.Combine(AppContext.BaseDirectory, "models");
var path = Path.Combine(folder, "fashion_centroids.onnx");
model.Save(path, new OnnxWriteOptions { ExternalData = ExternalDataMode.Always });
var reloaded = OnnxModel.Load(path);
var inspection = ModelInspector.Inspect(reloaded);
Console.WriteLine($"wrote {path} ({inspection.FileBytes} bytes) + {inspection.ExternalDataFiles[0].Location} ({inspection.ExternalDataFiles[0].Bytes} bytes)");
Console.WriteLine($"operators: {string.Join(", ", inspection.Operators.Select(o => $"{o.OpType}×{o.Count}"))}; parameters: {inspection.Totals.Parameters:N0}");

FashionMnist.WriteNpz(Path.Combine(folder, "calib.npz"), test: false, [784], 2048);
FashionMnist.WriteNpz(Path.Combine(folder, "test.npz"), test: true, [784]);
var specPath = Path.Combine(folder, "fashion_centroids.compress.json");
File.WriteAllText(specPath, """
    {
      "data": {
        "calibration": { "path": "calib.npz", "samples": 512 },
        "evaluation": { "path": "test.npz", "labels": "labels" }
      },
      "steps": [ { "quantize": { "weights": "int8", "activations": "uint8" } } ],
      "constraints": { "maxAccuracyDrop": 0.01 }
    }
    """);
var compressedPath = Path.Combine(folder, "fashion_centroids.int8.onnx");
var report = CompressionPipeline.Run(path, SpecLoader.Load(specPath), compressedPath, message => Console.WriteLine($"  {message}"));
Console.WriteLine($"compressed: {report.Size.OriginalBytes} -> {report.Size.CompressedBytes} bytes ({report.Size.Ratio:0.000}x), " +
    $"accuracy {report.Metrics!.OriginalAccuracy:P2} -> {report.Metrics.CompressedAccuracy:P2}");

var test = FashionMnist.Images(FashionMnist.TestImages, out var testCount);
var testLabels = FashionMnist.Labels(FashionMnist.TestLabels);
using var session = new InferenceSession(compressedPath);
using var input = OrtValue.CreateTensorValueFromMemory(test, [testCount, 784]);
using var results = session.Run(new RunOptions(), ["input"], [input], ["logits"]);
var accuracy = Classification.Accuracy(results[0].GetTensorDataAsSpan<float>(), testLabels, 10);
Console.WriteLine($"Fashion-MNIST test accuracy of the int8 model (ONNX Runtime, {testCount} images): {accuracy:P2}");
