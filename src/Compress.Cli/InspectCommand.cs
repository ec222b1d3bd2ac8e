using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Serialization;
using Compress.Core.Inspection;
using Compress.Core.Onnx;
using Spectre.Console;

namespace Compress.Cli;

/// <summary><c>compress inspect &lt;model&gt; [--json]</c>: a table for people, documented JSON for tools.</summary>
internal static class InspectCommand
{
    internal static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    public static Command Create(TextWriter stdout)
    {
        var model = new Argument<FileInfo>("model") { Description = "The ONNX model to inspect." };
        var json = new Option<bool>("--json") { Description = "Print JSON (documented in docs/cli/inspect.md) instead of tables." };
        var command = new Command("inspect", "Show a model's operators, weights, inputs and outputs, opsets and external data.") { model, json };
        command.SetAction(parse =>
        {
            var path = parse.GetValue(model)!.ToString();
            var inspection = ModelInspector.Inspect(OnnxModel.Load(path));
            if (parse.GetValue(json))
            {
                stdout.WriteLine(JsonSerializer.Serialize(inspection, JsonOptions));
            }
            else
            {
                InspectionTables.Write(inspection, stdout);
            }

            return 0;
        });
        return command;
    }
}
