using System;
using System.Collections.Generic;
using System.Linq;

namespace Compress.Spec
{
    /// <summary>
    /// <c>"module"</c>: the app's TorchSharp module type for a state dict (<c>Format="torchsharp"</c>). A state dict holds
    /// weights and no code; given the module type, the engine builds the module, loads the state dict into it and runs it,
    /// so the result is measured on data, constraints are checked and <c>finetune</c> distills through the module's own
    /// autograd. The assembly is the file <see cref="AssemblyPath"/> names, or the one named in <see cref="Type"/> among
    /// the assemblies the host offers (<see cref="References"/>: the project's references in a build, <c>--reference</c>
    /// on the command line).
    /// </summary>
    public sealed class ModuleSpec
    {
        /// <summary>The type as the spec names it: <c>MyApp.Models.FashionMlp, MyApp.Models</c> (assembly-qualified) or, with <see cref="AssemblyPath"/>, the full type name alone.</summary>
        public string Type { get; set; } = "";

        /// <summary>The full type name, without the assembly.</summary>
        public string TypeName => Type.Split(',')[0].Trim();

        /// <summary>The assembly's simple name from <see cref="Type"/>, or null when the type names none.</summary>
        public string? AssemblyName => Type.IndexOf(',') is var comma && comma < 0 ? null : Type.Substring(comma + 1).Split(',')[0].Trim();

        /// <summary>The assembly file the spec names (absolute), or null to find <see cref="AssemblyName"/> among <see cref="References"/>.</summary>
        public string? AssemblyPath { get; set; }

        /// <summary>The constructor's arguments, in order: <see cref="double"/>, <see cref="string"/> or <see cref="bool"/>; optional parameters after them take their defaults.</summary>
        public List<object> Arguments { get; } = new List<object>();

        /// <summary>Assembly files the host offers to find the type in (not part of the spec file).</summary>
        public List<string> References { get; } = new List<string>();

        /// <summary>The first .dll among <paramref name="files"/> whose file name is <paramref name="assemblyName"/> (any case), or null.</summary>
        public static string? FindAssembly(IEnumerable<string> files, string? assemblyName) =>
            assemblyName == null ? null : files.FirstOrDefault(f => f.EndsWith(".dll", StringComparison.OrdinalIgnoreCase)
                && string.Equals(System.IO.Path.GetFileNameWithoutExtension(f), assemblyName, StringComparison.OrdinalIgnoreCase));

        /// <summary>Line of the <c>module</c> object in the spec.</summary>
        public int Line { get; set; }

        /// <summary>Column of the <c>module</c> object in the spec.</summary>
        public int Column { get; set; }
    }
}
