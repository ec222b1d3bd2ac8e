using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using Compress.Spec.Manifest;

namespace Compress.Spec.Onnx
{
    /// <summary>What a cheap read of an ONNX file tells: inputs, outputs, opsets, operators, external data files.</summary>
    public sealed class OnnxSignature
    {
        public List<ManifestValue> Inputs { get; } = new List<ManifestValue>();

        public List<ManifestValue> Outputs { get; } = new List<ManifestValue>();

        public List<ManifestOpset> Opsets { get; } = new List<ManifestOpset>();

        public List<ManifestOperator> Operators { get; } = new List<ManifestOperator>();

        /// <summary>External data files the initializers name (locations as written, relative to the model).</summary>
        public SortedSet<string> ExternalDataFiles { get; } = new SortedSet<string>(StringComparer.Ordinal);
    }

    /// <summary>
    /// Reads an ONNX model's signature straight from the protobuf wire format, skipping weight bytes with seeks:
    /// milliseconds for any size of model, no dependency, no native code — what MSBuild's design-time builds and the
    /// task's up-to-date check can afford. Only top-level graph facts are read (not subgraphs, not values).
    /// </summary>
    public static class OnnxSignatureReader
    {
        private const int MaxDepth = 64;

        /// <exception cref="InvalidDataException">The file is not a readable ONNX model.</exception>
        public static OnnxSignature Read(string path)
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 64 * 1024);
            return Read(stream);
        }

        /// <summary>The signature of the ONNX model in <paramref name="stream"/> (seekable; a packed model expanded in memory, say).</summary>
        /// <exception cref="InvalidDataException">The bytes are not a readable ONNX model.</exception>
        public static OnnxSignature Read(Stream stream)
        {
            var wire = new Wire(stream);
            var signature = new OnnxSignature();
            var graphSeen = false;
            wire.Message(stream.Length, 0, (field, type) =>
            {
                if (field == 7 && type == 2)
                {
                    graphSeen = true;
                    ReadGraph(wire, signature);
                    return true;
                }

                if (field == 8 && type == 2)
                {
                    string domain = "";
                    long version = 0;
                    wire.Embedded(1, (f, t) =>
                    {
                        if (f == 1 && t == 2) { domain = wire.String(); return true; }
                        if (f == 2 && t == 0) { version = (long)wire.Varint(); return true; }
                        return false;
                    });
                    signature.Opsets.Add(new ManifestOpset(domain.Length == 0 ? "ai.onnx" : domain, version));
                    return true;
                }

                return false;
            });
            if (!graphSeen)
            {
                throw new InvalidDataException("the file has no graph: it is not an ONNX model");
            }

            return signature;
        }

        private static void ReadGraph(Wire wire, OnnxSignature signature)
        {
            var initializers = new HashSet<string>(StringComparer.Ordinal);
            var inputs = new List<ManifestValue>();
            var operators = new Dictionary<(string, string), ManifestOperator>();
            wire.Embedded(1, (field, type) =>
            {
                switch (field)
                {
                    case 1 when type == 2:
                        ReadNode(wire, operators);
                        return true;
                    case 5 when type == 2:
                        initializers.Add(ReadInitializer(wire, signature));
                        return true;
                    case 15 when type == 2:
                        wire.Embedded(2, (f, t) =>
                        {
                            if (f == 1 && t == 2)
                            {
                                initializers.Add(ReadInitializer(wire, signature));
                                return true;
                            }

                            return false;
                        });
                        return true;
                    case 11 when type == 2:
                        inputs.Add(ReadValueInfo(wire));
                        return true;
                    case 12 when type == 2:
                        signature.Outputs.Add(ReadValueInfo(wire));
                        return true;
                    default:
                        return false;
                }
            });
            signature.Inputs.AddRange(inputs.Where(i => !initializers.Contains(i.Name)));
            signature.Operators.AddRange(operators.Values.OrderBy(o => o.Domain, StringComparer.Ordinal).ThenBy(o => o.Op, StringComparer.Ordinal));
        }

        private static void ReadNode(Wire wire, Dictionary<(string, string), ManifestOperator> operators)
        {
            string op = "", domain = "", name = "";
            wire.Embedded(2, (f, t) =>
            {
                if (t != 2) return false;
                switch (f)
                {
                    case 3: name = wire.String(); return true;
                    case 4: op = wire.String(); return true;
                    case 7: domain = wire.String(); return true;
                    default: return false;
                }
            });
            domain = domain.Length == 0 || domain == "ai.onnx" ? "ai.onnx" : domain;
            if (!operators.TryGetValue((domain, op), out var entry))
            {
                entry = new ManifestOperator { Domain = domain, Op = op };
                operators.Add((domain, op), entry);
            }

            entry.Count++;
            if (entry.Nodes.Count < 8 && name.Length > 0)
            {
                entry.Nodes.Add(name);
            }
        }

        private static string ReadInitializer(Wire wire, OnnxSignature signature)
        {
            var name = "";
            string? location = null;
            var external = false;
            wire.Embedded(3, (f, t) =>
            {
                if (f == 8 && t == 2) { name = wire.String(); return true; }
                if (f == 14 && t == 0) { external = wire.Varint() == 1; return true; }
                if (f == 13 && t == 2)
                {
                    string key = "", value = "";
                    wire.Embedded(4, (ef, et) =>
                    {
                        if (ef == 1 && et == 2) { key = wire.String(); return true; }
                        if (ef == 2 && et == 2) { value = wire.String(); return true; }
                        return false;
                    });
                    if (key == "location")
                    {
                        location = value;
                    }

                    return true;
                }

                return false;
            });
            if (external && location is not null)
            {
                signature.ExternalDataFiles.Add(location);
            }

            return name;
        }

        private static ManifestValue ReadValueInfo(Wire wire)
        {
            var value = new ManifestValue();
            wire.Embedded(2, (f, t) =>
            {
                if (f == 1 && t == 2) { value.Name = wire.String(); return true; }
                if (f == 2 && t == 2) { ReadType(wire, value, 3); return true; }
                return false;
            });
            if (value.ElementType.Length == 0)
            {
                value.ElementType = "undefined";
            }

            return value;
        }

        private static void ReadType(Wire wire, ManifestValue value, int depth)
        {
            wire.Embedded(depth, (f, t) =>
            {
                if (t != 2) return false;
                switch (f)
                {
                    case 1: // tensor_type
                        wire.Embedded(depth + 1, (tf, tt) =>
                        {
                            if (tf == 1 && tt == 0) { value.ElementType = OnnxTypeNames.Name((int)wire.Varint()); return true; }
                            if (tf == 2 && tt == 2) { value.Shape = ReadShape(wire, depth + 2); return true; }
                            return false;
                        });
                        return true;
                    case 4: value.ElementType = "sequence"; return false;
                    case 5: value.ElementType = "map"; return false;
                    case 8: value.ElementType = "sparse_tensor"; return false;
                    case 9: value.ElementType = "optional"; return false;
                    default: return false;
                }
            });
        }

        private static List<ManifestDimension> ReadShape(Wire wire, int depth)
        {
            var dims = new List<ManifestDimension>();
            wire.Embedded(depth, (f, t) =>
            {
                if (f != 1 || t != 2) return false;
                long? dimValue = null;
                string? dimParam = null;
                wire.Embedded(depth + 1, (df, dt) =>
                {
                    if (df == 1 && dt == 0) { dimValue = (long)wire.Varint(); return true; }
                    if (df == 2 && dt == 2) { dimParam = wire.String(); return true; }
                    return false;
                });
                dims.Add(new ManifestDimension(dimValue, string.IsNullOrEmpty(dimParam) ? null : dimParam));
                return true;
            });
            return dims;
        }

        /// <summary>Protobuf wire reading over a seekable stream: fields a callback does not take are skipped.</summary>
        private sealed class Wire
        {
            private readonly Stream _stream;
            private long _end;

            public Wire(Stream stream)
            {
                _stream = stream;
                _end = stream.Length;
            }

            /// <summary>Reads fields up to <paramref name="end"/>; <paramref name="field"/> returns false to skip one.</summary>
            public void Message(long end, int depth, Func<int, int, bool> field)
            {
                if (depth > MaxDepth)
                {
                    throw new InvalidDataException("the model nests messages too deeply");
                }

                var outer = _end;
                _end = end;
                while (_stream.Position < end)
                {
                    var tag = Varint();
                    var number = (int)(tag >> 3);
                    var type = (int)(tag & 7);
                    if (number == 0)
                    {
                        throw Corrupt();
                    }

                    if (type == 2)
                    {
                        var length = (long)Varint();
                        var stop = _stream.Position + length;
                        if (length < 0 || stop > end)
                        {
                            throw Corrupt();
                        }

                        var saved = _end;
                        _end = stop;
                        var taken = field(number, type);
                        _end = saved;
                        if (!taken || _stream.Position != stop)
                        {
                            _stream.Position = stop;
                        }

                        continue;
                    }

                    if (!field(number, type))
                    {
                        Skip(type);
                    }
                }

                if (_stream.Position != end)
                {
                    throw Corrupt();
                }

                _end = outer;
            }

            /// <summary>The embedded message whose bytes the current length-delimited field spans.</summary>
            public void Embedded(int depth, Func<int, int, bool> field) => Message(_end, depth, field);

            public string String()
            {
                var length = checked((int)(_end - _stream.Position));
                if (length > 1 << 20)
                {
                    throw new InvalidDataException("a name in the model is longer than 1 MiB");
                }

                var bytes = new byte[length];
                ReadExactly(bytes);
                return Encoding.UTF8.GetString(bytes);
            }

            public ulong Varint()
            {
                ulong result = 0;
                for (var shift = 0; shift < 64; shift += 7)
                {
                    var b = _stream.ReadByte();
                    if (b < 0)
                    {
                        throw Corrupt();
                    }

                    result |= (ulong)(b & 0x7f) << shift;
                    if ((b & 0x80) == 0)
                    {
                        return result;
                    }
                }

                throw Corrupt();
            }

            private void Skip(int type)
            {
                switch (type)
                {
                    case 0: Varint(); break;
                    case 1: Advance(8); break;
                    case 5: Advance(4); break;
                    default: throw Corrupt();
                }
            }

            private void Advance(long count)
            {
                if (_stream.Position + count > _end)
                {
                    throw Corrupt();
                }

                _stream.Position += count;
            }

            private void ReadExactly(byte[] buffer)
            {
                var offset = 0;
                while (offset < buffer.Length)
                {
                    var read = _stream.Read(buffer, offset, buffer.Length - offset);
                    if (read == 0)
                    {
                        throw Corrupt();
                    }

                    offset += read;
                }
            }

            private static InvalidDataException Corrupt() => new InvalidDataException("the file is truncated or not an ONNX model (invalid protobuf)");
        }
    }
}
