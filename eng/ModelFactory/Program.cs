// Trains the project's Fashion-MNIST models with TorchSharp and exports them to ONNX:
//   dotnet run --project eng/ModelFactory -c Release -- [output folder, default models/]
//   dotnet run --project eng/ModelFactory -c Release -- data <folder>   (the sample's Fashion-MNIST .npz files)
// MLP 784-300-100-10 and a small CNN; fixed seeds. Accuracies are measured on the 10,000 test images in
// TorchSharp and again in ONNX Runtime on the exported file.
using Compress.Core.Data;
using Compress.Core.Evaluation;
using Compress.Core.Torch;
using Microsoft.ML.OnnxRuntime;
using ModelFactory;
using TorchSharp;
using static TorchSharp.torch;

if (args is ["data", var dataFolder])
{
    // The sample's calibration and evaluation data: 512 training images and the 10,000 test images, flat [n, 784].
    FashionMnist.WriteNpz(Path.Combine(dataFolder, "fashion-calibration.npz"), test: false, [784], 512);
    FashionMnist.WriteNpz(Path.Combine(dataFolder, "fashion-test.npz"), test: true, [784]);
    Console.WriteLine($"wrote {dataFolder}/fashion-calibration.npz and fashion-test.npz");
    return;
}

var output = args.Length > 0 ? args[0] : "models";
TorchRuntime.EnsureLoaded();
torch.set_num_threads(Environment.ProcessorCount);

var trainX = FashionMnist.Images(FashionMnist.TrainImages, out var trainCount);
var trainY = FashionMnist.Labels(FashionMnist.TrainLabels);
var testX = FashionMnist.Images(FashionMnist.TestImages, out var testCount);
var testY = FashionMnist.Labels(FashionMnist.TestLabels);

Layer[] mlp =
[
    new Dense("fc1", 784, 300), new Relu("relu1"), new Dense("fc2", 300, 100), new Relu("relu2"), new Dense("fc3", 100, 10),
];
Layer[] cnn =
[
    new Conv("conv1", 1, 16, 5, 2), new BatchNorm("bn1", 16), new Relu("relu1"), new MaxPool("pool1", 2),
    new Conv("conv2", 16, 32, 5, 2), new BatchNorm("bn2", 32), new Relu("relu2"), new MaxPool("pool2", 2),
    new Flatten("flatten"), new Dense("fc1", 1568, 128), new Relu("relu3"), new Dense("fc2", 128, 10),
];

Train("fashion_mlp", mlp, [784], epochs: 12, ["batch", 784]);
Train("fashion_cnn", cnn, [1, 28, 28], epochs: 6, ["batch", 1, 28, 28]);

void Train(string name, Layer[] layers, long[] sampleShape, int epochs, object[] onnxShape)
{
    torch.manual_seed(20261122);
    var model = Architecture.Build(layers);
    using var x = torch.tensor(trainX, [trainCount, .. sampleShape]);
    using var y = torch.tensor(trainY.Select(b => (long)b).ToArray(), [trainCount]);
    using var optimizer = torch.optim.Adam(model.parameters(), 1e-3);
    var scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs);
    for (var epoch = 0; epoch < epochs; epoch++)
    {
        model.train();
        using var order = torch.randperm(trainCount);
        double total = 0;
        for (long start = 0; start < trainCount; start += 128)
        {
            using var scope = torch.NewDisposeScope();
            var index = order.narrow(0, start, Math.Min(128, trainCount - start));
            var loss = torch.nn.functional.cross_entropy(model.forward(x.index_select(0, index)), y.index_select(0, index));
            optimizer.zero_grad();
            loss.backward();
            optimizer.step();
            total += loss.item<float>() * index.shape[0];
        }

        scheduler.step();
        Console.WriteLine($"{name} epoch {epoch + 1}/{epochs}: train loss {total / trainCount:0.0000}");
    }

    model.eval();
    double torchAccuracy;
    using (torch.no_grad())
    using (var tx = torch.tensor(testX, [testCount, .. sampleShape]))
    using (var predicted = model.forward(tx).argmax(1))
    {
        var labels = predicted.data<long>().ToArray();
        torchAccuracy = labels.Where((p, i) => p == testY[i]).Count() / (double)testCount;
    }

    var onnx = Compress.Core.Torch.SequentialExporter.Export(model, onnxShape, name, "input", "logits");
    var path = Path.GetFullPath(Path.Combine(output, name + ".onnx"));
    onnx.Save(path, new Compress.Core.Onnx.OnnxWriteOptions { ExternalData = Compress.Core.Onnx.ExternalDataMode.Never });

    using var session = new InferenceSession(path);
    using var input = OrtValue.CreateTensorValueFromMemory(testX, [testCount, .. sampleShape]);
    using var results = session.Run(new RunOptions(), ["input"], [input], ["logits"]);
    var onnxAccuracy = Classification.Accuracy(results[0].GetTensorDataAsSpan<float>(), testY, 10);
    Console.WriteLine($"{name}: TorchSharp test accuracy {torchAccuracy:0.0000}, ONNX Runtime {onnxAccuracy:0.0000}, {new FileInfo(path).Length} bytes -> {path}");
}
