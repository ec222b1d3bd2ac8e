using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;
using Compress.Spec;
using Compress.Spec.Manifest;
using Compress.Spec.Onnx;

namespace Compress.Generators
{
    /// <summary>One manifest turned into the wrapper's full source text (or the problems that prevent it).</summary>
    internal sealed class WrapperSource : IEquatable<WrapperSource>
    {
        private WrapperSource(string manifestPath, string fullName, string hintName, string? source, ImmutableArray<Problem> problems, bool torchSharp = false)
        {
            TorchSharp = torchSharp;
            ManifestPath = manifestPath;
            FullName = fullName;
            HintName = hintName;
            Source = source;
            Problems = problems;
        }

        public string ManifestPath { get; }

        /// <summary>A TorchSharp state-dict loader or TorchScript wrapper (needs Compress.Runtime.TorchSharp), not an ONNX wrapper.</summary>
        public bool TorchSharp { get; }

        public string FullName { get; }

        public string HintName { get; }

        public string? Source { get; }

        public ImmutableArray<Problem> Problems { get; }

        public static WrapperSource Create(string path, string text)
        {
            ModelManifest manifest;
            try
            {
                manifest = ManifestJson.Read(text, path);
            }
            catch (SpecException e)
            {
                return Failed(path, new Problem(Descriptors.MalformedManifest, path, e.Line, e.Column, e.Message));
            }

            var className = Identifiers.Type(manifest.Name) + "Model";
            var ns = string.IsNullOrWhiteSpace(manifest.Namespace) ? "Compress.Models" : Identifiers.Namespace(manifest.Namespace!);
            var fullName = ns + "." + className;
            if (!manifest.GenerateWrapper)
            {
                return new WrapperSource(path, fullName, "", null, ImmutableArray<Problem>.Empty);
            }

            if (manifest.Format is "torchsharp" or "torchscript")
            {
                var writer = new WrapperWriter(manifest, ns, className, Path.GetFileName(path));
                var generated = manifest.Format == "torchsharp" ? writer.WriteStateDictLoader() : writer.WriteTorchScript();
                return new WrapperSource(path, fullName, fullName + ".g.cs", generated, ImmutableArray<Problem>.Empty, torchSharp: true);
            }

            foreach (var (kind, value) in manifest.Inputs.Select(v => ("input", v)).Concat(manifest.Outputs.Select(v => ("output", v))))
            {
                if (WrapperElementType.Find(value.ElementType) is null)
                {
                    return Failed(path, new Problem(Descriptors.UnsupportedType, path, 1, 1, fullName, kind, value.Name, value.ElementType), fullName);
                }
            }

            var source = new WrapperWriter(manifest, ns, className, Path.GetFileName(path)).Write();
            return new WrapperSource(path, fullName, fullName + ".g.cs", source, ImmutableArray<Problem>.Empty);
        }

        private static WrapperSource Failed(string path, Problem problem, string fullName = "") =>
            new WrapperSource(path, fullName, "", null, ImmutableArray.Create(problem));

        public bool Equals(WrapperSource? other) =>
            other is not null && TorchSharp == other.TorchSharp && ManifestPath == other.ManifestPath && FullName == other.FullName && HintName == other.HintName
            && Source == other.Source && Problems.SequenceEqual(other.Problems);

        public override bool Equals(object? obj) => Equals(obj as WrapperSource);

        public override int GetHashCode() => (ManifestPath, FullName, Source?.Length ?? -1).GetHashCode();
    }

    /// <summary>C# identifiers from model names: <c>input.1</c> → <c>input1</c>, <c>class</c> → <c>@class</c>.</summary>
    internal static class Identifiers
    {
        private static readonly HashSet<string> Keywords = new HashSet<string>(StringComparer.Ordinal)
        {
            "abstract", "as", "base", "bool", "break", "byte", "case", "catch", "char", "checked", "class", "const", "continue",
            "decimal", "default", "delegate", "do", "double", "else", "enum", "event", "explicit", "extern", "false", "finally",
            "fixed", "float", "for", "foreach", "goto", "if", "implicit", "in", "int", "interface", "internal", "is", "lock",
            "long", "namespace", "new", "null", "object", "operator", "out", "override", "params", "private", "protected",
            "public", "readonly", "ref", "return", "sbyte", "sealed", "short", "sizeof", "stackalloc", "static", "string",
            "struct", "switch", "this", "throw", "true", "try", "typeof", "uint", "ulong", "unchecked", "unsafe", "ushort",
            "using", "virtual", "void", "volatile", "while",
        };

        public static string Type(string name) => Pascal(name, "Model");

        public static string Namespace(string name) =>
            string.Join(".", name.Split('.').Select(part => Pascal(part, "Models", keepCase: true)));

        public static string Property(string name) => Pascal(name, "Value");

        public static string Parameter(string name)
        {
            var pascal = Pascal(name, "value");
            var camel = char.ToLowerInvariant(pascal[0]) + pascal.Substring(1);
            return Keywords.Contains(camel) ? "@" + camel : camel;
        }

        private static string Pascal(string name, string fallback, bool keepCase = false)
        {
            var text = new StringBuilder();
            var upper = true;
            foreach (var c in name)
            {
                if (char.IsLetterOrDigit(c) || c == '_')
                {
                    text.Append(upper && !keepCase ? char.ToUpperInvariant(c) : c);
                    upper = false;
                }
                else
                {
                    upper = true;
                }
            }

            if (text.Length == 0)
            {
                return fallback;
            }

            if (char.IsDigit(text[0]))
            {
                text.Insert(0, '_');
            }

            return text.ToString();
        }

        /// <summary>Makes every name unique by appending 2, 3, … to repeats (in order), avoiding <paramref name="taken"/>.</summary>
        public static List<string> Unique(IEnumerable<string> names, ISet<string> taken)
        {
            var result = new List<string>();
            foreach (var name in names)
            {
                var candidate = name;
                for (var i = 2; taken.Contains(candidate); i++)
                {
                    candidate = name + i.ToString(CultureInfo.InvariantCulture);
                }

                taken.Add(candidate);
                result.Add(candidate);
            }

            return result;
        }
    }
}
