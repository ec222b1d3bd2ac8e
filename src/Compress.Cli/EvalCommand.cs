using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Compress.Core;
using Compress.Core.Calibration;
using Compress.Core.Diagnostics;
using Compress.Core.Evaluation;
using Compress.Core.Fidelity;
using Compress.Core.Onnx;
using Compress.Core.StateDicts;
using Compress.Spec;

namespace Compress.Cli;

/// <summary>
/// <c>compress eval &lt;model&gt; --data &lt;file&gt; [--labels name] [--reference original] [--output name] [--metric m] [--samples N] [--json]</c>
/// for every format <c>run</c> takes: ONNX and TorchScript models are run on the data (every output's fidelity by its
/// kind); a TorchSharp state dict, which holds weights but no code, is compared tensor by tensor.
/// </summary>
internal static class EvalCommand
{
    public static Command Create(TextWriter stdout)
    {
        var model = new Argument<FileInfo>("model") { Description = "The model to evaluate: ONNX, TorchScript archive or TorchSharp state dict." };
        var data = new Option<FileInfo?>("--data") { Description = ".npz/.npy with one array per model input (ONNX, TorchScript)." };
        var labels = new Option<string?>("--labels") { Description = "Name of the labels array in the data file (for accuracy)." };
        var reference = new Option<FileInfo?>("--reference") { Description = "The original model, for agreement, cosine and SQNR (or per-tensor error of a state dict)." };
        var output = new Option<string?>("--output") { Description = "The output judged first (default: the first float output)." };
        var metric = new Option<string?>("--metric") { Description = "Measure the judged output as: accuracy, agreement, cosine or sqnr (default: by its kind)." };
        metric.AcceptOnlyFromAmong([.. SpecReader.Choices["data.metric"]]);
        var samples = new Option<int?>("--samples") { Description = "Use a seeded random subset of this many samples." };
        var json = new Option<bool>("--json") { Description = "Print JSON." };
        var command = new Command("eval", "Evaluate a model on data: accuracy, and agreement/cosine/SQNR per output against a reference model.")
        {
            model, data, labels, reference, output, metric, samples, json,
        };
        command.SetAction(parse =>
        {
            var path = parse.GetValue(model)!.FullName;
            var referencePath = parse.GetValue(reference)?.FullName;
            var format = File.Exists(path) ? ModelFormats.Detect(path) : ModelFormats.Onnx;
            if (format == ModelFormats.TorchSharp)
            {
                Print(stdout, StateDictComparison.Compare(path, referencePath), parse.GetValue(json));
                return 0;
            }

            var dataFile = parse.GetValue(data)?.FullName
                ?? throw CompressException.Error(DiagnosticCodes.CommandLineUsage, $"--data is required to evaluate a{(format == ModelFormats.Onnx ? "n ONNX model" : " TorchScript module")}", path);
            var source = new DataSource { Path = dataFile, Labels = parse.GetValue(labels), Samples = parse.GetValue(samples), Metric = parse.GetValue(metric), Output = parse.GetValue(output) };
            ComparisonMetrics metrics;
            if (format == ModelFormats.TorchScript)
            {
                metrics = TorchScriptCompressor.Evaluate(path, referencePath ?? path, source, new CompressionSpec { File = path, Evaluation = source });
            }
            else
            {
                var candidate = OnnxModel.Load(path);
                var original = referencePath is null ? candidate : OnnxModel.Load(referencePath);
                var set = CalibrationSet.Load(dataFile, original, source.Labels, source.Samples, 0);
                try
                {
                    metrics = ModelComparison.Compare(original, candidate, set, FidelityChoice.From(source));
                }
                catch (UnknownOutputException e)
                {
                    throw CompressException.Error(DiagnosticCodes.CommandLineUsage, $"--output: {e.Message}", path);
                }
            }

            Print(stdout, metrics, referencePath is not null, parse.GetValue(json));
            return 0;
        });
        return command;
    }

    private static void Print(TextWriter stdout, ComparisonMetrics metrics, bool compared, bool json)
    {
        if (json)
        {
            stdout.WriteLine(JsonSerializer.Serialize(metrics, Core.Reports.ReportWriter.Json));
            return;
        }

        var c = CultureInfo.InvariantCulture;
        stdout.WriteLine(string.Create(c, $"samples: {metrics.Samples}"));
        foreach (var o in metrics.Outputs)
        {
            var judged = o.Name == metrics.Output ? ", judged" : "";
            stdout.WriteLine(string.Create(c, $"output '{o.Name}' ({OutputKinds.Name(o.Kind)}{judged}):"));
            if (o.CompressedAccuracy is { } accuracy)
            {
                var versus = compared ? string.Create(c, $" (reference {o.OriginalAccuracy:0.0000})") : "";
                stdout.WriteLine(string.Create(c, $"  accuracy: {accuracy:0.0000}{versus}"));
            }

            if (!compared)
            {
                continue;
            }

            if (o.Agreement is { } agreement)
            {
                stdout.WriteLine(string.Create(c, $"  agreement: {agreement:0.0000} of {o.Predictions} predictions"));
            }

            if (o.MeanCosine is { } cosine)
            {
                stdout.WriteLine(string.Create(c, $"  cosine: mean {cosine:0.0000}, 1st percentile {o.P1Cosine:0.0000}"));
            }

            stdout.WriteLine(string.Create(c, $"  sqnr: {o.SqnrDb:0.00} dB"));
        }
    }

    private static void Print(TextWriter stdout, List<StateDictTensorFigures> tensors, bool json)
    {
        if (json)
        {
            stdout.WriteLine(JsonSerializer.Serialize(tensors, Core.Reports.ReportWriter.Json));
            return;
        }

        var c = CultureInfo.InvariantCulture;
        stdout.WriteLine("state dict: weights only (no code to run); each float tensor against the reference");
        foreach (var t in tensors)
        {
            var error = t.RelativeError is { } e ? string.Create(c, $", relative error {e:E2}") : "";
            stdout.WriteLine(string.Create(c, $"  {t.Name}: {t.Parameters:N0} parameters, sparsity {t.Sparsity:P1}{error}"));
        }
    }
}
