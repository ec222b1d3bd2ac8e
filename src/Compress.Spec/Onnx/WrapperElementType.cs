using System.Collections.Generic;
using System.Linq;

namespace Compress.Spec.Onnx
{
    /// <summary>
    /// The element types typed wrappers pass, one row per type: ONNX name, the C# type the generator writes, the CLR
    /// metadata name the analyzers compare with, ONNX Runtime's TensorElementType member, and the wording diagnostics use.
    /// The one table the generator and the analyzers share.
    /// </summary>
    public sealed class WrapperElementType
    {
        private WrapperElementType(string onnx, string csharp, string clr, string ort, string? label = null)
        {
            Onnx = onnx;
            CSharp = csharp;
            Clr = clr;
            Ort = ort;
            Label = label ?? onnx;
        }

        public string Onnx { get; }

        public string CSharp { get; }

        /// <summary>E.g. <c>System.Single</c>, <c>System.Half</c>.</summary>
        public string Clr { get; }

        public string Ort { get; }

        /// <summary>How diagnostics name it: <c>float32</c>, <c>float16 (Half)</c>, <c>int8</c>…</summary>
        public string Label { get; }

        public bool IsString => Onnx == "string";

        public bool IsHalf => Onnx == "float16";

        public static readonly IReadOnlyList<WrapperElementType> All = new[]
        {
            new WrapperElementType("float", "float", "System.Single", "Float", "float32"),
            new WrapperElementType("double", "double", "System.Double", "Double", "float64"),
            new WrapperElementType("float16", "global::System.Half", "System.Half", "Float16", "float16 (Half)"),
            new WrapperElementType("int8", "sbyte", "System.SByte", "Int8"), new WrapperElementType("uint8", "byte", "System.Byte", "UInt8"),
            new WrapperElementType("int16", "short", "System.Int16", "Int16"), new WrapperElementType("uint16", "ushort", "System.UInt16", "UInt16"),
            new WrapperElementType("int32", "int", "System.Int32", "Int32"), new WrapperElementType("uint32", "uint", "System.UInt32", "UInt32"),
            new WrapperElementType("int64", "long", "System.Int64", "Int64"), new WrapperElementType("uint64", "ulong", "System.UInt64", "UInt64"),
            new WrapperElementType("bool", "bool", "System.Boolean", "Bool"), new WrapperElementType("string", "string", "System.String", "String"),
        };

        public static WrapperElementType? Find(string onnx) => All.FirstOrDefault(t => t.Onnx == onnx);

        public static WrapperElementType? FindClr(string clr) => All.FirstOrDefault(t => t.Clr == clr);
    }
}
