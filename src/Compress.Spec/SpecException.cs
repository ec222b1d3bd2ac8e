using System;

namespace Compress.Spec
{
    /// <summary>The spec's diagnostic IDs (engine range). Each has a help page under docs/diagnostics/.</summary>
    public static class SpecCodes
    {
        /// <summary>The spec is not valid JSON.</summary>
        public const string Syntax = "CMP0100";

        /// <summary>A key the spec format does not have.</summary>
        public const string UnknownKey = "CMP0101";

        /// <summary>A value of the wrong JSON type.</summary>
        public const string WrongType = "CMP0102";

        /// <summary>A value outside its allowed range or set.</summary>
        public const string OutOfRange = "CMP0103";

        /// <summary>A required key is missing.</summary>
        public const string MissingKey = "CMP0104";

        /// <summary>A method name this version does not implement.</summary>
        public const string UnknownMethod = "CMP0105";

        /// <summary>A data file named by the spec does not exist.</summary>
        public const string DataFileMissing = "CMP0106";

        /// <summary>Settings that contradict each other, or a method that needs data the spec does not give.</summary>
        public const string Inconsistent = "CMP0107";

        /// <summary>The spec file cannot be read.</summary>
        public const string Unreadable = "CMP0108";
    }

    /// <summary>A spec problem at a file, line and column.</summary>
    public sealed class SpecException : Exception
    {
        public SpecException(string code, string message, string file, int line, int column)
            : base(message)
        {
            Code = code;
            File = file;
            Line = line;
            Column = column;
        }

        public string Code { get; }

        public string File { get; }

        public int Line { get; }

        public int Column { get; }

        /// <summary>MSBuild canonical form.</summary>
        public override string ToString() => $"{File}({Line},{Column}): error {Code}: {Message}";
    }
}
