using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace Compress.Spec
{
    /// <summary>
    /// Writes indented JSON with keys in the order given and invariant number formatting, so the same data always
    /// gives the same bytes (manifests and generated specs feed incremental builds and hashes). netstandard2.0 has no
    /// System.Text.Json without a package, and the analyzers that share this code may not carry one.
    /// </summary>
    public sealed class JsonWriter
    {
        private readonly StringBuilder _text = new StringBuilder();
        private readonly Stack<bool> _first = new Stack<bool>();
        private bool _afterKey;

        public JsonWriter StartObject() => Open('{');

        public JsonWriter EndObject() => Close('}');

        public JsonWriter StartArray() => Open('[');

        public JsonWriter EndArray() => Close(']');

        public JsonWriter Key(string name)
        {
            Separator();
            AppendString(name);
            _text.Append(": ");
            _afterKey = true;
            return this;
        }

        public JsonWriter String(string? value)
        {
            Separator();
            if (value is null)
            {
                _text.Append("null");
            }
            else
            {
                AppendString(value);
            }

            return this;
        }

        public JsonWriter Number(double value)
        {
            Separator();
            if (double.IsNaN(value) || double.IsInfinity(value))
            {
                _text.Append("null");
            }
            else
            {
                _text.Append(value.ToString("R", CultureInfo.InvariantCulture));
            }

            return this;
        }

        public JsonWriter Number(long value)
        {
            Separator();
            _text.Append(value.ToString(CultureInfo.InvariantCulture));
            return this;
        }

        public JsonWriter Boolean(bool value)
        {
            Separator();
            _text.Append(value ? "true" : "false");
            return this;
        }

        public JsonWriter Null()
        {
            Separator();
            _text.Append("null");
            return this;
        }

        public JsonWriter Property(string name, string? value) => Key(name).String(value);

        public JsonWriter Property(string name, long value) => Key(name).Number(value);

        public JsonWriter Property(string name, double value) => Key(name).Number(value);

        public JsonWriter Property(string name, bool value) => Key(name).Boolean(value);

        public override string ToString() => _text.ToString() + "\n";

        /// <summary><paramref name="value"/> as a quoted, escaped string literal — valid JSON and valid C#.</summary>
        public static string Quote(string value)
        {
            var writer = new JsonWriter();
            writer.AppendString(value);
            return writer._text.ToString();
        }

        private JsonWriter Open(char bracket)
        {
            Separator();
            _text.Append(bracket);
            _first.Push(true);
            return this;
        }

        private JsonWriter Close(char bracket)
        {
            var empty = _first.Pop();
            if (!empty)
            {
                NewLine();
            }

            _text.Append(bracket);
            return this;
        }

        private void Separator()
        {
            if (_afterKey)
            {
                _afterKey = false;
                return;
            }

            if (_first.Count == 0)
            {
                return;
            }

            if (!_first.Peek())
            {
                _text.Append(',');
            }

            _first.Pop();
            _first.Push(false);
            NewLine();
        }

        private void NewLine()
        {
            _text.Append('\n');
            _text.Append(' ', 2 * _first.Count);
        }

        private void AppendString(string value)
        {
            _text.Append('"');
            foreach (var c in value)
            {
                switch (c)
                {
                    case '"': _text.Append("\\\""); break;
                    case '\\': _text.Append("\\\\"); break;
                    case '\n': _text.Append("\\n"); break;
                    case '\r': _text.Append("\\r"); break;
                    case '\t': _text.Append("\\t"); break;
                    default:
                        if (c < 0x20)
                        {
                            _text.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                        }
                        else
                        {
                            _text.Append(c);
                        }

                        break;
                }
            }

            _text.Append('"');
        }
    }
}
