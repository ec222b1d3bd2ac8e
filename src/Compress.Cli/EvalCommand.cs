using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Compress.Core.Calibration;
using Compress.Core.Evaluation;
using Compress.Core.Onnx;

namespace Compress.Cli;

/// <summary><c>compress eval &lt;model&gt; --data &lt;file&gt; [--labels name] [--reference original.onnx] [--samples N] [--json]</c>.</summary>
internal static class EvalCommand
{
    public static Command Create(TextWriter stdout)
    {
        var model = new Argument<FileInfo>("model") { Description = "The model to evaluate." };
        var data = new Option<FileInfo>("--data") { Description = ".npz/.npy with one array per model input.", Required = true };
        var labels = new Option<string?>("--labels") { Description = "Name of the labels array in the data file (for accuracy)." };
        var reference = new Option<FileInfo?>("--reference") { Description = "The original model, for agreement and SQNR." };
        var samples = new Option<int?>("--samples") { Description = "Use a seeded random subset of this many samples." };
        var json = new Option<bool>("--json") { Description = "Print JSON." };
        var command = new Command("eval", "Evaluate a model on data: accuracy, and agreement/SQNR against a reference model.")
        {
            model, data, labels, reference, samples, json,
        };
        command.SetAction(parse =>
        {
            var candidate = OnnxModel.Load(parse.GetValue(model)!.FullName);
            var original = parse.GetValue(reference) is { } r ? OnnxModel.Load(r.FullName) : candidate;
            var set = CalibrationSet.Load(parse.GetValue(data)!.FullName, original, parse.GetValue(labels), parse.GetValue(samples), 0);
            var metrics = ModelComparison.Compare(original, candidate, set);
            if (parse.GetValue(json))
            {
                stdout.WriteLine(JsonSerializer.Serialize(metrics, Core.Reports.ReportWriter.Json));
            }
            else
            {
                var c = CultureInfo.InvariantCulture;
                stdout.WriteLine(string.Create(c, $"samples: {metrics.Samples}"));
                if (metrics.CompressedAccuracy is { } accuracy)
                {
                    var versus = ReferenceEquals(original, candidate) ? "" : string.Create(c, $" (reference {metrics.OriginalAccuracy:0.0000})");
                    stdout.WriteLine(string.Create(c, $"accuracy: {accuracy:0.0000}{versus}"));
                }

                if (!ReferenceEquals(original, candidate))
                {
                    stdout.WriteLine(string.Create(c, $"agreement: {metrics.Agreement:0.0000} of {metrics.AgreementPredictions} predictions"));
                    stdout.WriteLine(string.Create(c, $"sqnr: {metrics.SqnrDb:0.00} dB"));
                }
            }

            return 0;
        });
        return command;
    }
}
