using System;
using System.Globalization;
using System.Text;

namespace Compress.Spec
{
    /// <summary>
    /// A small strict JSON parser (RFC 8259, plus // and /* */ comments) that records where every value and key
    /// starts. Hand-written so the same code runs in the engine and inside the compiler (netstandard2.0, no
    /// dependencies). Errors are <see cref="SpecException"/>s with the position of the offending character.
    /// </summary>
    public sealed class JsonParser
    {
        private const int MaxDepth = 64;
        private readonly string _text;
        private readonly string _file;
        private int _position;
        private int _line = 1;
        private int _lineStart;

        private JsonParser(string text, string file)
        {
            _text = text;
            _file = file;
        }

        public static JsonNode Parse(string text, string file)
        {
            var parser = new JsonParser(text, file);
            if (text.Length > 0 && text[0] == '\uFEFF')
            {
                parser._position = 1;
                parser._lineStart = 1;
            }

            parser.SkipTrivia();
            var root = parser.ParseValue(0);
            parser.SkipTrivia();
            if (parser._position < text.Length)
            {
                throw parser.Error("unexpected text after the end of the JSON document");
            }

            return root;
        }

        private int Column => _position - _lineStart + 1;

        private JsonNode ParseValue(int depth)
        {
            if (depth > MaxDepth)
            {
                throw Error($"JSON nests deeper than {MaxDepth} levels");
            }

            if (_position >= _text.Length)
            {
                throw Error("unexpected end of file: a value was expected");
            }

            var c = _text[_position];
            switch (c)
            {
                case '{':
                    return ParseObject(depth);
                case '[':
                    return ParseArray(depth);
                case '"':
                    {
                        var node = new JsonNode(JsonKind.String, _line, Column);
                        node.Text = ParseString();
                        return node;
                    }

                case 't':
                case 'f':
                case 'n':
                    return ParseLiteral();
                default:
                    if (c == '-' || (c >= '0' && c <= '9'))
                    {
                        return ParseNumber();
                    }

                    throw Error($"unexpected character '{c}': a value was expected");
            }
        }

        private JsonNode ParseObject(int depth)
        {
            var node = new JsonNode(JsonKind.Object, _line, Column);
            _position++;
            SkipTrivia();
            if (Peek() == '}')
            {
                _position++;
                return node;
            }

            while (true)
            {
                SkipTrivia();
                if (Peek() != '"')
                {
                    throw Error("a property name in double quotes was expected");
                }

                int keyLine = _line, keyColumn = Column;
                var key = ParseString();
                if (node[key] != null)
                {
                    throw new SpecException(SpecCodes.Syntax, $"duplicate key '{key}'", _file, keyLine, keyColumn);
                }

                SkipTrivia();
                Expect(':');
                SkipTrivia();
                var value = ParseValue(depth + 1);
                node.Members.Add(new JsonMember(key, keyLine, keyColumn, value));
                SkipTrivia();
                var next = Peek();
                _position++;
                if (next == '}')
                {
                    return node;
                }

                if (next != ',')
                {
                    _position--;
                    throw Error(next == '\0' ? "unexpected end of file: '}' expected" : "',' or '}' expected");
                }
            }
        }

        private JsonNode ParseArray(int depth)
        {
            var node = new JsonNode(JsonKind.Array, _line, Column);
            _position++;
            SkipTrivia();
            if (Peek() == ']')
            {
                _position++;
                return node;
            }

            while (true)
            {
                SkipTrivia();
                node.Items.Add(ParseValue(depth + 1));
                SkipTrivia();
                var next = Peek();
                _position++;
                if (next == ']')
                {
                    return node;
                }

                if (next != ',')
                {
                    _position--;
                    throw Error(next == '\0' ? "unexpected end of file: ']' expected" : "',' or ']' expected");
                }
            }
        }

        private string ParseString()
        {
            _position++; // opening quote
            var builder = new StringBuilder();
            while (true)
            {
                if (_position >= _text.Length || _text[_position] == '\n')
                {
                    throw Error("unterminated string");
                }

                var c = _text[_position++];
                if (c == '"')
                {
                    return builder.ToString();
                }

                if (c < 0x20)
                {
                    _position--;
                    throw Error("control character in string");
                }

                if (c != '\\')
                {
                    builder.Append(c);
                    continue;
                }

                var escape = Peek();
                _position++;
                switch (escape)
                {
                    case '"': builder.Append('"'); break;
                    case '\\': builder.Append('\\'); break;
                    case '/': builder.Append('/'); break;
                    case 'b': builder.Append('\b'); break;
                    case 'f': builder.Append('\f'); break;
                    case 'n': builder.Append('\n'); break;
                    case 'r': builder.Append('\r'); break;
                    case 't': builder.Append('\t'); break;
                    case 'u':
                        if (_position + 4 > _text.Length
                            || !int.TryParse(_text.Substring(_position, 4), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var code))
                        {
                            throw Error("invalid \\u escape");
                        }

                        builder.Append((char)code);
                        _position += 4;
                        break;
                    default:
                        _position--;
                        throw Error($"invalid escape '\\{escape}'");
                }
            }
        }

        private JsonNode ParseNumber()
        {
            var node = new JsonNode(JsonKind.Number, _line, Column);
            var start = _position;
            if (Peek() == '-')
            {
                _position++;
            }

            while (_position < _text.Length && "0123456789.eE+-".IndexOf(_text[_position]) >= 0)
            {
                _position++;
            }

            var text = _text.Substring(start, _position - start);
            if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || text.EndsWith(".", StringComparison.Ordinal)
                || (text.Length > 1 && text[0] == '0' && char.IsDigit(text[1])))
            {
                _position = start;
                throw Error($"invalid number '{text}'");
            }

            node.Number = value;
            node.Text = text;
            return node;
        }

        private JsonNode ParseLiteral()
        {
            foreach (var (word, kind, flag) in new[] { ("true", JsonKind.Boolean, true), ("false", JsonKind.Boolean, false), ("null", JsonKind.Null, false) })
            {
                if (string.CompareOrdinal(_text, _position, word, 0, word.Length) == 0)
                {
                    var node = new JsonNode(kind, _line, Column) { Boolean = flag };
                    _position += word.Length;
                    return node;
                }
            }

            throw Error("unexpected word: true, false or null expected (strings need double quotes)");
        }

        private void SkipTrivia()
        {
            while (_position < _text.Length)
            {
                var c = _text[_position];
                if (c == '\n')
                {
                    _position++;
                    _line++;
                    _lineStart = _position;
                }
                else if (c == ' ' || c == '\t' || c == '\r')
                {
                    _position++;
                }
                else if (c == '/' && _position + 1 < _text.Length && _text[_position + 1] == '/')
                {
                    while (_position < _text.Length && _text[_position] != '\n')
                    {
                        _position++;
                    }
                }
                else if (c == '/' && _position + 1 < _text.Length && _text[_position + 1] == '*')
                {
                    var end = _text.IndexOf("*/", _position + 2, StringComparison.Ordinal);
                    if (end < 0)
                    {
                        throw Error("unterminated comment");
                    }

                    for (; _position < end + 2; _position++)
                    {
                        if (_text[_position] == '\n')
                        {
                            _line++;
                            _lineStart = _position + 1;
                        }
                    }
                }
                else
                {
                    return;
                }
            }
        }

        private char Peek() => _position < _text.Length ? _text[_position] : '\0';

        private void Expect(char c)
        {
            if (Peek() != c)
            {
                throw Error($"'{c}' expected");
            }

            _position++;
        }

        private SpecException Error(string message) => new SpecException(SpecCodes.Syntax, message, _file, _line, Column);
    }
}
