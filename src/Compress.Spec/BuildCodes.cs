namespace Compress.Spec
{
    /// <summary>The MSBuild integration's diagnostic IDs (engine range). Each has a help page under docs/diagnostics/.</summary>
    public static class BuildCodes
    {
        /// <summary>Inline CompressModel metadata that is invalid, missing, or given together with a Spec file.</summary>
        public const string InlineInvalid = "CMP0109";

        /// <summary>A model format or item setting this version does not support.</summary>
        public const string Unsupported = "CMP0110";

        /// <summary>Two CompressModel items would produce the same wrapper name or output path.</summary>
        public const string Duplicate = "CMP0111";

        /// <summary>The compress tool is not where CompressModel_ToolPath says.</summary>
        public const string ToolMissing = "CMP0112";

        /// <summary>A design-time build could not read a model's signature, so no manifest was written (warning).</summary>
        public const string SignatureUnreadable = "CMP0113";

        /// <summary>The help page of a diagnostic (docs/diagnostics/&lt;id&gt;.md), for IDE links.</summary>
        public static string HelpLink(string id) => $"https://github.com/compress-build/compress-build/blob/main/docs/diagnostics/{id}.md";
    }
}
