using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using Compress.Spec;
using Compress.Spec.Kernels;
using Compress.Spec.Manifest;
using Compress.Spec.Methods;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Diagnostics;

namespace Compress.Analyzers
{
    /// <summary>
    /// CMP2003: operators of a manifest's model that the shipped ONNX Runtime has no CPU kernel for (at the model's opset
    /// and element types), at the operator in the manifest. CMP2004: a spec step asking for float16 weights or int8
    /// activations on operators of the source model without such a kernel, at the step in the spec, naming them.
    /// Both read the kernel table of <see cref="OrtKernelTable"/>, which eng/KernelProbe checks against the runtime.
    /// </summary>
    [DiagnosticAnalyzer(LanguageNames.CSharp)]
    public sealed class KernelAnalyzer : DiagnosticAnalyzer
    {
        /// <summary>CMP2004's property listing the op types without a kernel (comma-separated), for the exclude fix.</summary>
        public const string OpsProperty = "Ops";

        /// <summary>Ops whose quantized form ONNX Runtime runs on int8/uint8 (the op itself or its QLinear counterpart).</summary>
        private static readonly Dictionary<string, string[]> QuantizedForms = new Dictionary<string, string[]>
        {
            ["Conv"] = new[] { "ai.onnx:QLinearConv" },
            ["MatMul"] = new[] { "ai.onnx:QLinearMatMul", "ai.onnx:MatMulInteger" },
            ["Gemm"] = new[] { "com.microsoft:QGemm" },
            ["Add"] = new[] { "com.microsoft:QLinearAdd" },
            ["Mul"] = new[] { "com.microsoft:QLinearMul" },
            ["AveragePool"] = new[] { "com.microsoft:QLinearAveragePool" },
            ["GlobalAveragePool"] = new[] { "com.microsoft:QLinearGlobalAveragePool" },
            ["Concat"] = new[] { "com.microsoft:QLinearConcat" },
            ["Sigmoid"] = new[] { "com.microsoft:QLinearSigmoid" },
            ["LeakyRelu"] = new[] { "com.microsoft:QLinearLeakyRelu" },
            ["Softmax"] = new[] { "com.microsoft:QLinearSoftmax" },
            ["Relu"] = new[] { "fused" }, // folded into the producer's requantization
        };

        private static readonly HashSet<string> Structural = new HashSet<string> { "QuantizeLinear", "DequantizeLinear", "Cast", "Identity", "Constant" };

        public override ImmutableArray<DiagnosticDescriptor> SupportedDiagnostics =>
            ImmutableArray.Create(Rules.UnsupportedOperator, Rules.PrecisionWithoutKernel, Rules.MethodFindsNothing);

        public override void Initialize(AnalysisContext context)
        {
            context.ConfigureGeneratedCodeAnalysis(GeneratedCodeAnalysisFlags.None);
            context.EnableConcurrentExecution();
            context.RegisterCompilationStartAction(start =>
            {
                var manifests = new List<(string Path, ModelManifest Manifest, JsonNode Root)>();
                foreach (var file in start.Options.AdditionalFiles)
                {
                    if (!Flag(start.Options, file, "CompressManifest") || file.GetText(start.CancellationToken) is not { } text)
                    {
                        continue;
                    }

                    try
                    {
                        var root = ManifestJson.Parse(text.ToString(), file.Path);
                        manifests.Add((file.Path, ManifestJson.Read(root, file.Path), root));
                    }
                    catch (SpecException)
                    {
                        // CMP1001 from the generator says what is wrong with it.
                    }
                }

                start.RegisterAdditionalFileAction(file =>
                {
                    if (Flag(file.Options, file.AdditionalFile, "CompressManifest"))
                    {
                        foreach (var entry in manifests.Where(m => m.Path == file.AdditionalFile.Path))
                        {
                            CheckOperators(file, entry.Manifest, entry.Root);
                        }
                    }
                    else if (Flag(file.Options, file.AdditionalFile, "CompressSpec"))
                    {
                        CheckSpec(file, manifests.Where(m => PathsEqual(m.Manifest.Spec, file.AdditionalFile.Path)).Select(m => m.Manifest).ToList());
                    }
                });
            });
        }

        private static void CheckOperators(AdditionalFileAnalysisContext context, ModelManifest manifest, JsonNode root)
        {
            var text = context.AdditionalFile.GetText(context.CancellationToken)!;
            var items = root["operators"]?.Items ?? new List<JsonNode>();
            for (var i = 0; i < manifest.Operators.Count && i < items.Count; i++)
            {
                var op = manifest.Operators[i];
                var opset = Opset(manifest, op.Domain);
                if (opset is null || Structural.Contains(op.Op))
                {
                    continue;
                }

                var row = OrtKernelTable.Cpu.Find(op.Domain, op.Op, opset.Value);
                string? problem = null;
                if (row is null)
                {
                    problem = "";
                }
                else if (op.ElementTypes.Count > 0 && !op.ElementTypes.Any(t => row.Types.Values.Any(v => v.Contains(t))))
                {
                    problem = $" for {string.Join(", ", op.ElementTypes)}";
                }

                if (problem is not null)
                {
                    var at = items[i]["op"] ?? items[i];
                    context.ReportDiagnostic(Diagnostic.Create(Rules.UnsupportedOperator, SpecAnalyzer.At(context.AdditionalFile.Path, text, at.Line, at.Column),
                        $"{op.Domain}.{op.Op}", NodeList(op), opset, problem));
                }
            }
        }

        private static void CheckSpec(AdditionalFileAnalysisContext context, List<ModelManifest> manifests)
        {
            if (manifests.Count == 0 || context.AdditionalFile.GetText(context.CancellationToken) is not { } text)
            {
                return;
            }

            CompressionSpec spec;
            try
            {
                spec = SpecReader.Read(text.ToString(), context.AdditionalFile.Path, checkFiles: false);
            }
            catch (SpecException)
            {
                return; // CMP2001 reports it
            }

            foreach (var step in spec.Steps)
            {
                // The operators whose weights the step rewrites, from its method (or scheme) descriptor.
                var method = MethodCatalog.Of(step);
                var scheme = method.Scheme(step.Scheme);
                var handles = (scheme is null ? method.Touches : scheme.Touches) ?? new string[0];
                var kind = scheme is null ? method.Kind.Noun : $"{scheme.Name} {method.Kind.Noun}";
                foreach (var manifest in manifests.Where(m => handles.Count > 0 && m.SourceOperators.Count > 0
                    && !m.SourceOperators.Any(o => o.Domain == "ai.onnx" && handles.Contains(o.Op))))
                {
                    context.ReportDiagnostic(Diagnostic.Create(Rules.MethodFindsNothing, SpecAnalyzer.At(context.AdditionalFile.Path, text, step.Line, step.Column),
                        kind, string.Join(" and ", handles), manifest.Name,
                        string.Join(", ", manifest.SourceOperators.Select(o => o.Op).Distinct().Take(8))));
                }
            }

            foreach (var step in spec.Steps.OfType<QuantizeStep>())
            {
                foreach (var manifest in manifests)
                {
                    var opset = Opset(manifest, "ai.onnx") ?? 0;
                    var ops = manifest.SourceOperators.Where(o => o.Domain == "ai.onnx" && !Structural.Contains(o.Op)).ToList();
                    List<ManifestOperator> lacking;
                    string precision;
                    if (step.Weights == "fp16")
                    {
                        precision = "float16 weights";
                        lacking = ops.Where(o => OrtKernelTable.Cpu.Find("", o.Op, opset) is { } row && !row.Types.Values.Any(v => v.Contains("float16"))).ToList();
                    }
                    else if (step.Activations is "int8" or "uint8")
                    {
                        precision = step.Activations + " activations";
                        var chosen = step.OpTypes;
                        lacking = ops.Where(o => (chosen.Count == 0 || chosen.Contains(o.Op)) && !HasIntegerKernel(o.Op, opset)).ToList();
                    }
                    else
                    {
                        continue;
                    }

                    if (lacking.Count > 0)
                    {
                        var names = string.Join(", ", lacking.Select(o => o.Nodes.Count > 0 ? $"{o.Op} ({string.Join(", ", o.Nodes.Take(3))}{(o.Count > 3 ? ", …" : "")})" : o.Op));
                        context.ReportDiagnostic(Diagnostic.Create(Rules.PrecisionWithoutKernel, SpecAnalyzer.At(context.AdditionalFile.Path, text, step.Line, step.Column),
                            ImmutableDictionary<string, string?>.Empty.Add(OpsProperty, string.Join(",", lacking.Select(o => o.Op))),
                            precision, $"{lacking.Count} operator type(s) of {manifest.Name}", names));
                    }
                }
            }
        }

        private static bool HasIntegerKernel(string op, long opset)
        {
            if (OrtKernelTable.Cpu.Find("", op, opset) is { } row && row.Types.Values.Any(v => v.Contains("int8") || v.Contains("uint8")))
            {
                return true;
            }

            return QuantizedForms.TryGetValue(op, out var forms) && forms.Any(f =>
            {
                if (f == "fused")
                {
                    return true;
                }

                var parts = f.Split(':');
                return OrtKernelTable.Cpu.Find(parts[0], parts[1], parts[0] == "ai.onnx" ? System.Math.Max(opset, 10) : 1) is not null;
            });
        }

        private static long? Opset(ModelManifest manifest, string domain) =>
            manifest.Opsets.FirstOrDefault(o => o.Domain == domain)?.Version;

        private static string NodeList(ManifestOperator op) =>
            op.Nodes.Count == 0 ? $"{op.Count} node(s)" : string.Join(", ", op.Nodes.Take(3)) + (op.Count > 3 ? $", … {op.Count} nodes" : "");

        private static bool Flag(AnalyzerOptions options, AdditionalText file, string name) =>
            options.AnalyzerConfigOptionsProvider.GetOptions(file).TryGetValue("build_metadata.AdditionalFiles." + name, out var flag)
            && string.Equals(flag, "true", System.StringComparison.OrdinalIgnoreCase);

        private static bool PathsEqual(string? a, string b) =>
            a is not null && string.Equals(a.Replace('\\', '/'), b.Replace('\\', '/'), System.StringComparison.OrdinalIgnoreCase);
    }
}
