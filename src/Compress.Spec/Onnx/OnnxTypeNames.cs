namespace Compress.Spec.Onnx
{
    /// <summary>The lower-case names ONNX uses for its element types (TensorProto.DataType), shared by every part.</summary>
    public static class OnnxTypeNames
    {
        private static readonly string[] Names =
        {
            "undefined", "float", "uint8", "int8", "uint16", "int16", "int32", "int64", "string", "bool", "float16",
            "double", "uint32", "uint64", "complex64", "complex128", "bfloat16", "float8e4m3fn", "float8e4m3fnuz",
            "float8e5m2", "float8e5m2fnuz", "uint4", "int4", "float4e2m1", "float8e8m0",
        };

        /// <summary>E.g. 1 → <c>float</c>, 10 → <c>float16</c>, 7 → <c>int64</c>; an unknown code gives <c>type&lt;n&gt;</c>.</summary>
        public static string Name(int type) => type >= 0 && type < Names.Length ? Names[type] : "type" + type;

        /// <summary>The ONNX code of a type name (<c>float16</c> → 10), or -1.</summary>
        public static int Code(string name) => System.Array.IndexOf(Names, name);
    }
}
