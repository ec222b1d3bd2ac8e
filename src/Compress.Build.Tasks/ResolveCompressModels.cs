using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Compress.Spec;
using Compress.Spec.IO;
using Compress.Spec.Manifest;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

namespace Compress.Build.Tasks
{
    /// <summary>
    /// Turns <c>CompressModel</c> items into everything the later targets need, without reading any model: the
    /// artifact, report and manifest paths under <c>$(IntermediateOutputPath)</c>, where the artifact goes in the
    /// output folder, the wrapper name, and the spec file (an inline spec is written next to the outputs, and only
    /// when its text changes, so its timestamp tells the up-to-date check when the metadata changed).
    /// </summary>
    public sealed class ResolveCompressModels : Task
    {
        [Required]
        public ITaskItem[] Models { get; set; } = Array.Empty<ITaskItem>();

        [Required]
        public string ProjectDirectory { get; set; } = "";

        [Required]
        public string ProjectFile { get; set; } = "";

        /// <summary>Where outputs go (e.g. <c>obj/Debug/net10.0/compress/</c>).</summary>
        [Required]
        public string OutputDirectory { get; set; } = "";

        public string? DefaultNamespace { get; set; }

        [Output]
        public ITaskItem[] Resolved { get; set; } = Array.Empty<ITaskItem>();

        public override bool Execute()
        {
            var resolved = new List<ITaskItem>();
            var names = new Dictionary<string, string>(StringComparer.Ordinal);
            var targets = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
            foreach (var model in Models)
            {
                var item = Resolve(model);
                if (item is null)
                {
                    continue;
                }

                var name = item.GetMetadata("WrapperName");
                var target = item.GetMetadata("ArtifactTargetPath");
                if (names.TryGetValue(name, out var other))
                {
                    Error(BuildCodes.Duplicate, $"CompressModel '{model.ItemSpec}' and '{other}' would both be named '{name}': set WrapperName on one of them");
                    continue;
                }

                if (targets.TryGetValue(target, out other))
                {
                    Error(BuildCodes.Duplicate, $"CompressModel '{model.ItemSpec}' and '{other}' would both be written to '{target}': set OutputName on one of them");
                    continue;
                }

                names.Add(name, model.ItemSpec);
                targets.Add(target, model.ItemSpec);
                resolved.Add(item);
            }

            Resolved = resolved.ToArray();
            return !Log.HasLoggedErrors;
        }

        private ITaskItem? Resolve(ITaskItem model)
        {
            var source = Path.GetFullPath(Path.Combine(ProjectDirectory, model.ItemSpec));
            var format = Metadata(model, "Format") ?? FormatOf(source);
            if (format is not ("onnx" or "torchsharp" or "torchscript"))
            {
                Error(BuildCodes.Unsupported, $"CompressModel '{model.ItemSpec}': Format '{format}' is not one of onnx, torchsharp, torchscript (set Format, or use the .onnx, .dat or .pt extension)");
                return null;
            }

            var spec = Metadata(model, "Spec");
            var outputName = Metadata(model, "OutputName") ?? PackedName(source, format, spec) ?? Path.GetFileName(source);
            if (outputName.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0 || outputName is "." or "..")
            {
                Error(BuildCodes.Unsupported, $"CompressModel '{model.ItemSpec}': OutputName '{outputName}' is not a file name");
                return null;
            }

            // In the output folder the artifact takes the original's place (Models/x.onnx stays Models/x.onnx); a model
            // from outside the project goes to the output folder's root, as MSBuild does for linked files.
            var relative = RelativeInsideProject(source);
            var folder = relative is null ? "" : Path.GetDirectoryName(relative) ?? "";
            var targetPath = folder.Length == 0 ? outputName : Path.Combine(folder, outputName);
            var artifact = Path.GetFullPath(Path.Combine(OutputDirectory, targetPath));
            var stem = Path.Combine(Path.GetDirectoryName(artifact)!, Path.GetFileNameWithoutExtension(outputName));
            var name = Metadata(model, "WrapperName") ?? WrapperNames.FromFileName(outputName);

            var metadata = InlineSpec.Names.ToDictionary(n => n, n => model.GetMetadata(n) ?? "", StringComparer.Ordinal);
            string specFile;
            if (InlineSpec.Uses(metadata))
            {
                if (spec is not null)
                {
                    var given = string.Join(", ", InlineSpec.Names.Where(n => metadata[n].Trim().Length > 0));
                    Error(BuildCodes.InlineInvalid, $"CompressModel '{model.ItemSpec}' has both Spec and inline metadata ({given}): use one or the other");
                    return null;
                }

                string text;
                try
                {
                    text = InlineSpec.Build(metadata, ProjectDirectory, ProjectFile);
                }
                catch (SpecException e)
                {
                    Error(e.Code, $"CompressModel '{model.ItemSpec}': {e.Message}");
                    return null;
                }

                specFile = stem + ".inline-spec.json";
                AtomicFile.WriteAllTextIfChanged(specFile, text);
            }
            else if (spec is not null)
            {
                specFile = Path.GetFullPath(Path.Combine(ProjectDirectory, spec));
            }
            else
            {
                Error(BuildCodes.InlineInvalid, $"CompressModel '{model.ItemSpec}' says nothing about how to compress: set Spec (a spec file) or inline metadata such as Quantize=\"int8-dynamic\" or Sparsity=\"0.5\"");
                return null;
            }

            var item = new TaskItem(model.ItemSpec);
            model.CopyMetadataTo(item);
            item.SetMetadata("SourceFile", source);
            item.SetMetadata("Format", format);
            item.SetMetadata("SpecFile", specFile);
            item.SetMetadata("WrapperName", name);
            item.SetMetadata("WrapperNamespace", Metadata(model, "Namespace") ?? DefaultNamespace ?? "");
            item.SetMetadata("GenerateWrapper", Metadata(model, "GenerateWrapper") ?? "true");
            item.SetMetadata("ArtifactFile", artifact);
            item.SetMetadata("ArtifactTargetPath", targetPath);
            item.SetMetadata("ReportFile", stem + ".compress-report.json");
            item.SetMetadata("ReportMarkdownFile", stem + ".compress-report.md");
            item.SetMetadata("ReportHtmlFile", stem + ".compress-report.html");
            item.SetMetadata("ReportTargetPath", Path.Combine(folder, Path.GetFileNameWithoutExtension(outputName)) + ".compress-report");
            item.SetMetadata("ManifestFile", stem + ".manifest.json");
            return item;
        }

        /// <summary>
        /// <c>x.cpack</c> for an ONNX model whose spec ends in a <c>pack</c> step writing the packed form (the engine
        /// refuses any other name for it); null otherwise, and for a spec that does not read (the engine reports it).
        /// </summary>
        private string? PackedName(string source, string format, string? spec)
        {
            if (format != "onnx" || spec is null)
            {
                return null;
            }

            var path = Path.GetFullPath(Path.Combine(ProjectDirectory, spec));
            try
            {
                var read = SpecReader.Read(File.ReadAllText(path), path, checkFiles: false);
                return read.Steps.OfType<PackStep>().Any(p => p.Format == PackStep.PackedFormat) ? Path.ChangeExtension(Path.GetFileName(source), ".cpack") : null;
            }
            catch (Exception e) when (e is SpecException || e is IOException || e is UnauthorizedAccessException)
            {
                return null;
            }
        }

        private string? RelativeInsideProject(string path)
        {
            var root = Path.GetFullPath(ProjectDirectory).TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar) + Path.DirectorySeparatorChar;
            return path.StartsWith(root, StringComparison.OrdinalIgnoreCase) ? path.Substring(root.Length) : null;
        }

        private static string FormatOf(string path) => Path.GetExtension(path).ToLowerInvariant() switch
        {
            ".onnx" => "onnx",
            ".pt" or ".ts" or ".torchscript" => "torchscript",
            ".dat" or ".bin" => "torchsharp",
            var other => other.TrimStart('.'),
        };

        private static string? Metadata(ITaskItem item, string name)
        {
            var value = item.GetMetadata(name);
            return string.IsNullOrWhiteSpace(value) ? null : value.Trim();
        }

        private void Error(string code, string message) =>
            Log.LogError(null, code, null, ProjectFile, 0, 0, 0, 0, message);
    }
}
