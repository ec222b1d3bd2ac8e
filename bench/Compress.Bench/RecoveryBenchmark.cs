using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using Compress.Core;
using Compress.Core.Data;
using Compress.Core.Spec;

namespace Compress.Bench;

/// <summary>
/// <c>recovery [mlp] [cnn] [int4] [pack] [statedict]</c>: issue 19's recoveries on the Fashion-MNIST models, each next to its one-shot
/// baseline — the MLP at 95 % (SparseGPT + distillation; gradual magnitude + distillation), the CNN at 98 % (gradual
/// magnitude + distillation), int4 everywhere on the 90 % MLP, the packed artifacts of issue 18 after distillation, and
/// the MLP's weights as a TorchSharp state dict run in its module class (<see cref="FashionMlpModule"/>, named in the
/// spec's <c>module</c>) — distilling on the 60,000 training images without their labels, judged on the 10,000 test images. Each run in its own process: seconds, peak resident memory, accuracy, size;
/// the distilled MLP runs twice and the table says whether the bytes were the same.
/// </summary>
internal static class RecoveryBenchmark
{
    public const string ChildVerb = "__recovery-case";

    private const string Mlp95Obs = """{ "prune": { "method": "obs", "sparsity": 0.95 } }""";
    private const string Mlp95Gradual = """{ "prune": { "method": "magnitude", "sparsity": 0.95, "schedule": { "steps": 4 } } }""";
    private const string Cnn98 = """{ "prune": { "method": "magnitude", "sparsity": 0.98, "maxLayerSparsity": 0.995 } }""";
    private const string Cnn98Gradual = """{ "prune": { "method": "magnitude", "sparsity": 0.98, "maxLayerSparsity": 0.995, "schedule": { "steps": 6 } } }""";
    private const string Int4 = """{ "prune": { "method": "obs", "sparsity": 0.9 } }, { "quantize": { "weights": "int4", "activations": "none" } }""";
    private const string Pack = """{ "pack": { "bits": 4 } }""";
    private const string MlpFinetune = """{ "finetune": { "steps": 6000, "learningRate": 0.002 } }""";
    private const string CnnFinetune = """{ "finetune": { "steps": 5000, "learningRate": 0.003, "batchSize": 64 } }""";

    private static readonly (string Group, string Name, bool Image, string Steps)[] Cases =
    [
        ("mlp", "MLP 95 %, SparseGPT one shot", false, Mlp95Obs),
        ("mlp", "MLP 95 %, SparseGPT + distillation", false, $"{Mlp95Obs}, {MlpFinetune}"),
        ("mlp", "MLP 95 %, SparseGPT + distillation (again)", false, $"{Mlp95Obs}, {MlpFinetune}"),
        ("mlp", "MLP 95 %, gradual magnitude (4 stages) + distillation", false, $"{Mlp95Gradual}, {MlpFinetune}"),
        ("cnn", "CNN 98 %, magnitude one shot", true, Cnn98),
        ("cnn", "CNN 98 %, gradual magnitude (6 stages) + distillation", true, $"{Cnn98Gradual}, {CnnFinetune}"),
        ("int4", "MLP 90 % + int4, one shot", false, Int4),
        ("int4", "MLP 90 % + int4 + distillation", false, $"{Int4}, {MlpFinetune}"),
        ("pack", "MLP 95 %, gradual magnitude + distillation + pack 4 bits", false, $"{Mlp95Gradual}, {MlpFinetune}, {Pack}"),
        ("pack", "CNN 96 %, gradual magnitude + distillation + pack 4 bits", true,
            $$"""{ "prune": { "method": "magnitude", "sparsity": 0.96, "maxLayerSparsity": 0.995, "schedule": { "steps": 6 } } }, {{CnnFinetune}}, {{Pack}}"""),
        ("statedict", "MLP state dict 95 %, magnitude one shot", false, """{ "prune": { "sparsity": 0.95 } }"""),
        ("statedict", "MLP state dict 95 %, gradual magnitude (4 stages) + distillation", false, $"{Mlp95Gradual}, {MlpFinetune}"),
        ("statedict", "MLP state dict 95 %, gradual magnitude (4 stages) + distillation (again)", false, $"{Mlp95Gradual}, {MlpFinetune}"),
        ("statedict", "MLP state dict 90 % + int4, one shot", false, """{ "prune": { "sparsity": 0.9 } }, { "quantize": { "weights": "int4" } }"""),
        ("statedict", "MLP state dict 90 % + int4 + distillation", false, $$"""{ "prune": { "sparsity": 0.9 } }, { "quantize": { "weights": "int4" } }, {{MlpFinetune}}"""),
    ];

    public static int Run(string[] args)
    {
        var groups = args.Length == 0 ? ["mlp", "cnn", "int4", "pack", "statedict"] : args.ToHashSet();
        var folder = Path.Combine(Path.GetTempPath(), "compress-bench-recovery");
        Directory.CreateDirectory(folder);
        string Data(string name, bool test, bool image, int? count)
        {
            var path = Path.Combine(folder, name);
            if (!File.Exists(path))
            {
                FashionMnist.WriteNpz(path, test, image ? [1, 28, 28] : [784], count);
            }

            return path;
        }

        Console.WriteLine($"Fashion-MNIST: distilled on the 60,000 training images without labels, judged on the 10,000 test images; {Environment.ProcessorCount} cores");
        Console.WriteLine();
        Console.WriteLine("| model and steps | accuracy (dense) | bytes | seconds | peak RSS (MB) | same bytes as the run before |");
        Console.WriteLine("| --- | ---: | ---: | ---: | ---: | --- |");
        string? previous = null;
        foreach (var (group, name, image, steps) in Cases.Where(c => groups.Contains(c.Group)))
        {
            var kind = image ? "image" : "flat";
            var spec = Path.Combine(folder, "spec.json");
            // Only a spec that distills names training data (a spec without a finetune step refuses it).
            var training = steps.Contains("\"finetune\"", StringComparison.Ordinal)
                ? $$"""
                  "training": { "path": {{Json(Data($"train_{kind}.npz", false, image, null))}} },
                  """
                : "";
            var module = group == "statedict"
                ? $"\"module\": {{ \"type\": \"{typeof(FashionMlpModule).FullName}, {typeof(FashionMlpModule).Assembly.GetName().Name}\" }},"
                : "";
            File.WriteAllText(spec, $$"""
                { {{module}}
                  "data": {
                    "calibration": { "path": {{Json(Data($"calib_{kind}.npz", false, image, 2048))}}, "samples": 512, "seed": 7 },
                    {{training}}
                    "evaluation": { "path": {{Json(Data($"test_{kind}.npz", true, image, null))}}, "labels": "labels" } },
                  "constraints": { "minAgreement": 0 },
                  "steps": [ {{steps}} ] }
                """);
            var model = Path.Combine(CalibrationBenchmark.FindRoot(), "models", image ? "fashion_cnn.onnx" : "fashion_mlp.onnx");
            var output = steps.Contains("\"pack\"", StringComparison.Ordinal) ? "out.cpack" : "out.onnx";
            if (group == "statedict")
            {
                model = FashionMlpModule.StateDict(model, Path.Combine(folder, "fashion_mlp.dat"));
                output = "out.dat";
            }

            var fields = ChildProcess.Run(ChildVerb, model, spec, Path.Combine(folder, output));
            var same = name.EndsWith("(again)", StringComparison.Ordinal) ? (fields[4] == previous ? "yes" : "**no**") : "";
            previous = fields[4];
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {name} | {fields[2]} | {fields[3]} | {fields[0]} | {long.Parse(fields[1], CultureInfo.InvariantCulture) / 1e6:0} | {same} |"));
        }

        return 0;
    }

    /// <summary>One compression in this process: seconds, peak RSS, accuracy (dense), bytes and the output's SHA-256.</summary>
    public static int RunChild(string[] args)
    {
        var watch = Stopwatch.StartNew();
        var report = CompressionPipeline.Run(args[0], SpecLoader.Load(args[1]), args[2], measureLatency: false, format: ModelFormats.Detect(args[0]));
        var seconds = watch.Elapsed.TotalSeconds;
        var m = report.Metrics!;
        var hash = Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(args[2])));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"RESULT\t{seconds:0.0}\t{ChildProcess.PeakResidentBytes()}\t{m.CompressedAccuracy:P2} ({m.OriginalAccuracy:P2})\t{report.Size.CompressedBytes:N0}\t{hash}"));
        return 0;
    }

    private static string Json(string path) => System.Text.Json.JsonSerializer.Serialize(path);
}

/// <summary>The sample MLP as an app writes its TorchSharp module class: 784 → 300 → 100 → 10 with ReLU, fields named as the ONNX initializers.</summary>
public sealed class FashionMlpModule : TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor>
{
    private readonly TorchSharp.Modules.Linear fc1 = TorchSharp.torch.nn.Linear(784, 300);
    private readonly TorchSharp.Modules.Linear fc2 = TorchSharp.torch.nn.Linear(300, 100);
    private readonly TorchSharp.Modules.Linear fc3 = TorchSharp.torch.nn.Linear(100, 10);

    public FashionMlpModule()
        : base("fashion_mlp") => RegisterComponents();

    public override TorchSharp.torch.Tensor forward(TorchSharp.torch.Tensor input) =>
        fc3.call(TorchSharp.torch.nn.functional.relu(fc2.call(TorchSharp.torch.nn.functional.relu(fc1.call(input)))));

    /// <summary>The ONNX model's weights (PyTorch's Linear layout, the same names) written as a TorchSharp state dict at <paramref name="path"/> (once; the cases share it).</summary>
    public static string StateDict(string onnxPath, string path)
    {
        if (File.Exists(path))
        {
            return path;
        }

        var model = Compress.Core.Onnx.Proto.ModelProto.Parser.ParseFrom(File.ReadAllBytes(onnxPath));
        Compress.Runtime.StateDicts.StateDictFile.Write(path, model.Graph.Initializer.Select(t =>
            new Compress.Runtime.StateDicts.StateDictTensor(t.Name, Compress.Runtime.StateDicts.StateDictElementType.Float32, [.. t.Dims], t.RawData.ToByteArray())).ToList());
        return path;
    }
}
