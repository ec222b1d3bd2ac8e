using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using Compress.Spec;
using Compress.Spec.IO;
using Compress.Spec.Manifest;
using Compress.Spec.Onnx;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

namespace Compress.Build.Tasks
{
    /// <summary>
    /// Compresses the out-of-date models among <see cref="Models"/> (resolved by <see cref="ResolveCompressModels"/>)
    /// with one run of the compress CLI, whose canonical diagnostics become build errors at their file, line and
    /// column. A model is up to date when its artifact, reports and manifest are newer than the model (and its
    /// external data), the spec, the data files the spec names, and the tool. In a design-time build it only writes
    /// manifests from a cheap read of each model's signature, and never compresses.
    /// </summary>
    public sealed class CompressModels : ToolTask
    {
        [Required]
        public ITaskItem[] Models { get; set; } = Array.Empty<ITaskItem>();

        [Required]
        public string ProjectFile { get; set; } = "";

        /// <summary>compress.dll (run with <see cref="DotNetHost"/>) or an executable.</summary>
        [Required]
        public string CompressToolPath { get; set; } = "";

        /// <summary>The dotnet host that runs compress.dll (MSBuild's own by default).</summary>
        public string? DotNetHost { get; set; }

        /// <summary>Folders where the CLI's packages are found (the NuGet package folders, fallbacks included): passed as --additionalprobingpath.</summary>
        public string[] ProbingPaths { get; set; } = Array.Empty<string>();

        /// <summary>Files whose change means a new tool (the CLI's assemblies).</summary>
        public ITaskItem[] ToolInputs { get; set; } = Array.Empty<ITaskItem>();

        [Required]
        public string JobsFile { get; set; } = "";

        public bool DesignTime { get; set; }

        public bool MeasureLatency { get; set; } = true;

        /// <summary>
        /// The project's runtime assemblies (ReferenceCopyLocalPaths, RuntimeCopyLocalItems): where a spec's <c>module</c>
        /// type (a TorchSharp state dict's module class, <c>Namespace.Type, Assembly</c>) is found first, and what its
        /// dependencies load from. Passed to the CLI; the module's assembly is an input of the up-to-date check.
        /// </summary>
        public ITaskItem[] RuntimeReferences { get; set; } = Array.Empty<ITaskItem>();

        /// <summary>The project's compile references (ReferencePath), where the module's assembly is looked for after <see cref="RuntimeReferences"/>.</summary>
        public ITaskItem[] References { get; set; } = Array.Empty<ITaskItem>();

        /// <summary>The models that were compressed by this run.</summary>
        [Output]
        public ITaskItem[] Compressed { get; set; } = Array.Empty<ITaskItem>();

        protected override string ToolName => CompressToolPath.EndsWith(".dll", StringComparison.OrdinalIgnoreCase) ? "dotnet" : Path.GetFileName(CompressToolPath);

        protected override MessageImportance StandardOutputLoggingImportance => MessageImportance.High;

        protected override MessageImportance StandardErrorLoggingImportance => MessageImportance.Normal;

        public override bool Execute()
        {
            if (Models.Length == 0)
            {
                return true;
            }

            if (DesignTime)
            {
                foreach (var model in Models)
                {
                    WriteSignatureManifest(model);
                }

                return true;
            }

            var stale = new List<ITaskItem>();
            foreach (var model in Models)
            {
                var reason = OutOfDate(model);
                if (reason is null)
                {
                    continue;
                }

                Log.LogMessage(MessageImportance.Normal, $"Compress.Build: {model.ItemSpec} is out of date: {reason}");
                stale.Add(model);
            }

            if (Log.HasLoggedErrors)
            {
                return false;
            }

            if (stale.Count == 0)
            {
                Log.LogMessage(MessageImportance.Normal, $"Compress.Build: all {Models.Length} model(s) up to date, nothing to compress");
                return true;
            }

            if (!File.Exists(CompressToolPath))
            {
                Log.LogError(null, BuildCodes.ToolMissing, null, ProjectFile, 0, 0, 0, 0,
                    $"the compress tool was not found at '{CompressToolPath}' (CompressModel_ToolPath); restore the Compress.Build package or fix the override");
                return false;
            }

            foreach (var model in stale)
            {
                // A stale artifact must never reach the output folder if this run fails.
                if (File.Exists(model.GetMetadata("ArtifactFile")))
                {
                    File.Delete(model.GetMetadata("ArtifactFile"));
                }

                Log.LogMessage(MessageImportance.High, $"Compress.Build: compressing {model.ItemSpec} with {Path.GetFileName(model.GetMetadata("SpecFile"))}");
            }

            AtomicFile.WriteAllTextIfChanged(JobsFile, Jobs(stale));
            var ok = base.Execute();
            Compressed = stale.Where(m => File.Exists(m.GetMetadata("ArtifactFile"))).ToArray();
            return ok && !Log.HasLoggedErrors;
        }

        protected override string GenerateFullPathToTool() =>
            CompressToolPath.EndsWith(".dll", StringComparison.OrdinalIgnoreCase)
                ? (string.IsNullOrEmpty(DotNetHost) ? "dotnet" : DotNetHost!)
                : CompressToolPath;

        protected override string GenerateCommandLineCommands()
        {
            var builder = new CommandLineBuilder();
            if (CompressToolPath.EndsWith(".dll", StringComparison.OrdinalIgnoreCase))
            {
                var directory = Path.GetDirectoryName(CompressToolPath)!;
                var stem = Path.GetFileNameWithoutExtension(CompressToolPath);
                builder.AppendSwitch("exec");
                builder.AppendSwitchIfNotNull("--runtimeconfig ", Path.Combine(directory, stem + ".runtimeconfig.json"));
                var deps = Path.Combine(directory, stem + ".deps.json");
                if (File.Exists(deps))
                {
                    builder.AppendSwitchIfNotNull("--depsfile ", deps);
                }

                foreach (var probe in ProbingPaths.Where(p => !string.IsNullOrWhiteSpace(p)).Select(p => p.Trim().TrimEnd('/', '\\')).Distinct(StringComparer.Ordinal))
                {
                    builder.AppendSwitchIfNotNull("--additionalprobingpath ", probe);
                }

                builder.AppendFileNameIfNotNull(CompressToolPath);
            }

            builder.AppendSwitch("batch");
            builder.AppendFileNameIfNotNull(JobsFile);
            if (!MeasureLatency)
            {
                builder.AppendSwitch("--no-latency");
            }

            return builder.ToString();
        }

        /// <summary>Why <paramref name="model"/> needs compressing, or null when its outputs are newer than all its inputs.</summary>
        private string? OutOfDate(ITaskItem model)
        {
            var outputs = new[] { "ArtifactFile", "ReportFile", "ReportMarkdownFile", "ReportHtmlFile", "ManifestFile" }.Select(model.GetMetadata).ToList();
            var missing = outputs.FirstOrDefault(o => !File.Exists(o));
            if (missing is not null)
            {
                return $"{Path.GetFileName(missing)} does not exist";
            }

            var oldestOutput = outputs.Min(File.GetLastWriteTimeUtc);
            foreach (var input in Inputs(model))
            {
                if (!File.Exists(input))
                {
                    return $"{input} does not exist (the CLI will say more)";
                }

                if (File.GetLastWriteTimeUtc(input) > oldestOutput)
                {
                    return $"{input} changed";
                }
            }

            return null;
        }

        private IEnumerable<string> Inputs(ITaskItem model)
        {
            var source = model.GetMetadata("SourceFile");
            yield return source;
            OnnxSignature? signature = null;
            try
            {
                signature = File.Exists(source) ? OnnxSignatureReader.Read(source) : null;
            }
            catch (Exception e) when (e is InvalidDataException || e is IOException || e is UnauthorizedAccessException)
            {
                // The CLI reports a broken model with its code; the check only needs to know it must run.
            }

            if (signature is not null)
            {
                foreach (var location in signature.ExternalDataFiles)
                {
                    yield return Path.GetFullPath(Path.Combine(Path.GetDirectoryName(source)!, location));
                }
            }

            var specFile = model.GetMetadata("SpecFile");
            yield return specFile;
            // A broken spec makes the model out of date (its timestamp is newer than any output or the CLI failed last time).
            var spec = ReadSpec(specFile);

            foreach (var data in new[] { spec?.Calibration, spec?.Evaluation, spec?.Training })
            {
                if (data is not null)
                {
                    yield return data.Path;
                }
            }

            if (spec?.Module is ModuleSpec module && (module.AssemblyPath ?? ModuleReference(module)) is string assembly)
            {
                yield return assembly;
            }

            foreach (var tool in ToolInputs)
            {
                yield return tool.GetMetadata("FullPath");
            }
        }

        /// <summary>The .dll files of <paramref name="items"/>, in order, once each.</summary>
        private static IEnumerable<string> Assemblies(IEnumerable<ITaskItem> items) =>
            items.Select(r => r.GetMetadata("FullPath")).Where(r => r.EndsWith(".dll", StringComparison.OrdinalIgnoreCase)).Distinct(StringComparer.OrdinalIgnoreCase);

        /// <summary>The runtime (else compile) reference whose file name is the module type's assembly, or null.</summary>
        private string? ModuleReference(ModuleSpec module) => ModuleSpec.FindAssembly(Assemblies(RuntimeReferences.Concat(References)), module.AssemblyName);

        /// <summary>
        /// For the job of <paramref name="model"/> with a 'module' in its spec: the module type's assembly first, then the
        /// project's runtime assemblies its dependencies load from; none without a 'module'.
        /// </summary>
        private IEnumerable<string> JobReferences(ITaskItem model)
        {
            if (ReadSpec(model.GetMetadata("SpecFile"))?.Module is not ModuleSpec module)
            {
                return Array.Empty<string>();
            }

            var first = module.AssemblyPath is null && ModuleReference(module) is string reference ? new[] { reference } : Array.Empty<string>();
            return first.Concat(Assemblies(RuntimeReferences)).Distinct(StringComparer.OrdinalIgnoreCase);
        }

        /// <summary>The specs read in this run, by path: the up-to-date check and the jobs read each once.</summary>
        private readonly Dictionary<string, CompressionSpec?> _specs = new Dictionary<string, CompressionSpec?>(StringComparer.Ordinal);

        /// <summary>The spec, or null when it is missing or broken (the CLI reports its error at its place).</summary>
        private CompressionSpec? ReadSpec(string specFile)
        {
            if (_specs.TryGetValue(specFile, out var known))
            {
                return known;
            }

            CompressionSpec? spec;
            try
            {
                spec = File.Exists(specFile) ? SpecReader.Read(File.ReadAllText(specFile), specFile, checkFiles: false) : null;
            }
            catch (Exception e) when (e is SpecException || e is IOException || e is UnauthorizedAccessException)
            {
                spec = null;
            }

            _specs[specFile] = spec;
            return spec;
        }

        private string Jobs(IEnumerable<ITaskItem> models)
        {
            var w = new JsonWriter().StartObject().Key("jobs").StartArray();
            foreach (var m in models)
            {
                var references = JobReferences(m).ToList();
                w.StartObject()
                    .Property("model", m.GetMetadata("SourceFile"))
                    .Property("spec", m.GetMetadata("SpecFile"))
                    .Property("output", m.GetMetadata("ArtifactFile"))
                    .Key("reports").StartArray().String(m.GetMetadata("ReportFile")).String(m.GetMetadata("ReportMarkdownFile")).String(m.GetMetadata("ReportHtmlFile")).EndArray()
                    .Property("manifest", m.GetMetadata("ManifestFile"))
                    .Property("name", m.GetMetadata("WrapperName"))
                    .Property("namespace", m.GetMetadata("WrapperNamespace"))
                    .Property("generateWrapper", !string.Equals(m.GetMetadata("GenerateWrapper"), "false", StringComparison.OrdinalIgnoreCase))
                    .Property("artifactPath", m.GetMetadata("ArtifactTargetPath").Replace('\\', '/'));
                if (references.Count > 0)
                {
                    w.Key("references").StartArray();
                    references.ForEach(r => w.String(r));
                    w.EndArray();
                }

                w.EndObject();
            }

            return w.EndArray().EndObject().ToString();
        }

        /// <summary>Design-time: the manifest from the model's signature, when there is none or the model is newer.</summary>
        private void WriteSignatureManifest(ITaskItem model)
        {
            var source = model.GetMetadata("SourceFile");
            var path = model.GetMetadata("ManifestFile");
            if (!File.Exists(source) || (File.Exists(path) && File.GetLastWriteTimeUtc(path) >= File.GetLastWriteTimeUtc(source)))
            {
                return;
            }

            OnnxSignature? signature = null;
            try
            {
                // A TorchSharp state dict has no signature: its manifest carries the identity only.
                signature = model.GetMetadata("Format") == "onnx" ? OnnxSignatureReader.Read(source) : null;
            }
            catch (Exception e) when (e is InvalidDataException || e is IOException || e is UnauthorizedAccessException)
            {
                Log.LogWarning(null, BuildCodes.SignatureUnreadable, null, source, 0, 0, 0, 0, $"cannot read the model's signature: {e.Message}");
                return;
            }

            var manifest = new ModelManifest
            {
                Name = model.GetMetadata("WrapperName"),
                Namespace = NullIfEmpty(model.GetMetadata("WrapperNamespace")),
                GenerateWrapper = !string.Equals(model.GetMetadata("GenerateWrapper"), "false", StringComparison.OrdinalIgnoreCase),
                Format = model.GetMetadata("Format"),
                Source = source,
                Spec = model.GetMetadata("SpecFile"),
                ArtifactPath = model.GetMetadata("ArtifactTargetPath").Replace('\\', '/'),
                Compressed = false,
            };
            if (signature is not null)
            {
                manifest.Inputs.AddRange(signature.Inputs);
                manifest.Outputs.AddRange(signature.Outputs);
                manifest.Opsets.AddRange(signature.Opsets);
                manifest.Operators.AddRange(signature.Operators);
                manifest.SourceOperators.AddRange(signature.Operators);
            }

            AtomicFile.WriteAllTextIfChanged(path, ManifestJson.Write(manifest));
        }

        private static string? NullIfEmpty(string value) => value.Length == 0 ? null : value;
    }
}
