using System.Globalization;

namespace Compress.Spec.Methods
{
    public enum OptionType
    {
        Integer,
        Number,
        Boolean,
    }

    /// <summary>
    /// A key one method takes in its step, with that method's default and range. Several methods may declare the same
    /// key with their own defaults and ranges (<c>blockSize</c> of obs and woodfisher); the key applies to exactly the
    /// methods that declare it.
    /// </summary>
    public sealed class MethodOption
    {
        private MethodOption(string key, OptionType type, double value, double minimum, double maximum, string summary, string? gloss)
        {
            Key = key;
            Type = type;
            Default = value;
            Minimum = minimum;
            Maximum = maximum;
            Summary = summary;
            Gloss = gloss;
        }

        public string Key { get; }

        public OptionType Type { get; }

        /// <summary>The value when the step leaves the key out (booleans: 0 or 1).</summary>
        public double Default { get; }

        public double Minimum { get; }

        public double Maximum { get; }

        /// <summary>What the key sets for this method, in a few words (the schema's description).</summary>
        public string Summary { get; }

        /// <summary>A short gloss after the key in error messages, where the key alone is ambiguous (<c>steps</c>); or null.</summary>
        public string? Gloss { get; }

        /// <param name="gloss">See <see cref="Gloss"/>.</param>
        public static MethodOption Integer(string key, int value, int minimum, int maximum, string summary, string? gloss = null) =>
            new MethodOption(key, OptionType.Integer, value, minimum, maximum, summary, gloss);

        public static MethodOption Number(string key, double value, double minimum, double maximum, string summary) =>
            new MethodOption(key, OptionType.Number, value, minimum, maximum, summary, null);

        public static MethodOption Boolean(string key, bool value, string summary) =>
            new MethodOption(key, OptionType.Boolean, value ? 1 : 0, 0, 1, summary, null);

        /// <summary>The default as the docs write it: <c>128</c>, <c>0.01</c>, <c>1e-5</c>, <c>false</c>.</summary>
        public string DefaultText => Text(Default);

        /// <summary>A value of this option as the docs write it.</summary>
        public string Text(double value) =>
            Type == OptionType.Boolean ? (value != 0 ? "true" : "false")
            : value != 0 && System.Math.Abs(value) < 1e-3 ? value.ToString("0.###e-0", CultureInfo.InvariantCulture)
            : value.ToString("0.##########", CultureInfo.InvariantCulture);
    }
}
