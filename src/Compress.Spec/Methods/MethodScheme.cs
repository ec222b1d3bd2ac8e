using System.Collections.Generic;

namespace Compress.Spec.Methods
{
    /// <summary>
    /// One form a step of a kind with schemes writes (quantize: static QDQ, dynamic, weight-only, fp16), chosen by the
    /// step's settings rather than by its method; a method lists the schemes it can write.
    /// </summary>
    public sealed class MethodScheme
    {
        public MethodScheme(string name, string summary, MethodData data, ModelFormat formats, IReadOnlyList<string> opTypes, IReadOnlyList<string>? touches)
        {
            Name = name;
            Summary = summary;
            Data = data;
            Formats = formats;
            OpTypes = opTypes;
            Touches = touches;
        }

        public string Name { get; }

        /// <summary>What it writes and how a step asks for it, for messages (<c>'gptq' writes … or …</c>).</summary>
        public string Summary { get; }

        /// <summary>What it needs from <c>data.calibration</c> whatever the method (static ranges need activations).</summary>
        public MethodData Data { get; }

        public ModelFormat Formats { get; }

        /// <summary>The step's <c>opTypes</c> when the spec leaves them out.</summary>
        public IReadOnlyList<string> OpTypes { get; }

        /// <summary>
        /// The operators whose weights the scheme rewrites — a model with none of them gains nothing from the step
        /// (CMP2005); null when the step can change any model (QDQ around any selected op, fp16 on every initializer).
        /// </summary>
        public IReadOnlyList<string>? Touches { get; }

        public override string ToString() => Name;
    }

    /// <summary>The quantize schemes: names (constants, for attributes) and descriptors. <c>QuantizeStep.Scheme</c> picks one.</summary>
    public static class QuantizeSchemes
    {
        public const string Static = "static";
        public const string Dynamic = "dynamic";
        public const string WeightOnly = "weight-only";
        public const string Fp16 = "fp16";

        /// <summary>
    /// Static QDQ also covers the ops ONNX Runtime runs on int8 between them, so quantized regions connect. Every
    /// integer scheme also takes <c>Gather</c> over a constant table (embeddings, as GatherBlockQuantized).
    /// </summary>
        private static readonly string[] StaticOpTypes =
        {
            "Conv", "Gemm", "MatMul", "Add", "Mul", "MaxPool", "AveragePool", "GlobalAveragePool", "Concat", "Relu",
            "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Gather",
        };

        public static readonly MethodScheme StaticQdq = new MethodScheme(Static,
            "static int8 (QDQ, 'activations': 'int8'/'uint8')", MethodData.Activations, ModelFormat.Onnx, StaticOpTypes, null);

        public static readonly MethodScheme DynamicMatMul = new MethodScheme(Dynamic,
            "dynamic int8 (DynamicQuantizeMatMul, 'activations': 'dynamic')", MethodData.None, ModelFormat.Onnx, new[] { "Gemm", "MatMul", "Gather" }, new[] { "MatMul", "Gemm", "Gather" });

        public static readonly MethodScheme MatMulNBits = new MethodScheme(WeightOnly,
            "int4/int8 weight-only (MatMulNBits, 'activations': 'none')", MethodData.None, ModelFormat.All, new[] { "Gemm", "MatMul", "Gather" }, new[] { "MatMul", "Gemm", "Gather" });

        public static readonly MethodScheme Float16 = new MethodScheme(Fp16,
            "fp16 storage ('weights': 'fp16')", MethodData.None, ModelFormat.All, new[] { "Conv", "Gemm", "MatMul" }, null);
    }
}
