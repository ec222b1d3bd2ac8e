// A tour of Compress.Core's model I/O on real data: build a nearest-centroid Fashion-MNIST classifier as an
// ONNX graph (logits = x·Cᵀ − ½‖c‖², weights computed from the 60,000 training images), write it with
// external data, read it back, inspect it, and run it in ONNX Runtime on the 10,000 test images.
// The compressing sample (a <CompressModel> item in the project file) replaces this once `compress run`
// and the MSBuild task land.
using Compress.Core.Inspection;
using Compress.Core.Onnx;
using Compress.Core.Data;
using Microsoft.ML.OnnxRuntime;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

var train = FashionMnist.Images("train-images-idx3-ubyte.gz", out var trainCount);
var trainLabels = FashionMnist.Labels("train-labels-idx1-ubyte.gz");
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
    .Input("pixels", DataType.Float, "batch", 784)
    .Initializer("centroids", centroids, 10, 784)
    .Initializer("bias", bias, 10)
    .Node("Gemm", ["pixels", "centroids", "bias"], ["logits"], "classifier", "", OnnxAttribute.Int("transB", 1))
    .Output("logits", DataType.Float, "batch", 10)
    .Build();

var folder = Path.Combine(AppContext.BaseDirectory, "models");
var path = Path.Combine(folder, "fashion_centroids.onnx");
model.Save(path, new OnnxWriteOptions { ExternalData = ExternalDataMode.Always });
var reloaded = OnnxModel.Load(path);
var inspection = ModelInspector.Inspect(reloaded);
Console.WriteLine($"wrote {path} ({inspection.FileBytes} bytes) + {inspection.ExternalDataFiles[0].Location} ({inspection.ExternalDataFiles[0].Bytes} bytes)");
Console.WriteLine($"operators: {string.Join(", ", inspection.Operators.Select(o => $"{o.OpType}×{o.Count}"))}; parameters: {inspection.Totals.Parameters:N0}");

var test = FashionMnist.Images("t10k-images-idx3-ubyte.gz", out var testCount);
var testLabels = FashionMnist.Labels("t10k-labels-idx1-ubyte.gz");
using var session = new InferenceSession(path);
using var input = OrtValue.CreateTensorValueFromMemory(test, [testCount, 784]);
using var results = session.Run(new RunOptions(), ["pixels"], [input], ["logits"]);
var logits = results[0].GetTensorDataAsSpan<float>();
var correct = 0;
for (var i = 0; i < testCount; i++)
{
    var row = logits.Slice(i * 10, 10);
    var best = 0;
    for (var c = 1; c < 10; c++)
    {
        if (row[c] > row[best])
        {
            best = c;
        }
    }

    correct += best == testLabels[i] ? 1 : 0;
}

Console.WriteLine($"Fashion-MNIST test accuracy (ONNX Runtime, {testCount} images): {correct / (double)testCount:P2}");
