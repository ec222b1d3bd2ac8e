using System.Text;
using Compress.Core.Onnx;
using Compress.Core.Onnx.Proto;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace Compress.Core.Tests.TestSupport;

/// <summary>Runs models in ONNX Runtime (one thread, deterministic) and reduces outputs to comparable bytes.</summary>
public static class OrtHarness
{
    public static InferenceSession Open(string modelPath)
    {
        using var options = new SessionOptions { IntraOpNumThreads = 1, InterOpNumThreads = 1, LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
        return new InferenceSession(modelPath, options);
    }

    /// <summary>Runs the session and returns one fingerprint per output: type, shape and raw bytes.</summary>
    public static IReadOnlyList<byte[]> Run(InferenceSession session, IReadOnlyDictionary<string, OrtValue> inputs)
    {
        using var runOptions = new RunOptions();
        var outputNames = session.OutputNames.ToArray();
        using var results = session.Run(runOptions, inputs.Keys.ToArray(), inputs.Values.ToArray(), outputNames);
        return results.Select(Fingerprint).ToList();
    }

    public static OrtValue FromTensorProto(TensorProto tensor)
    {
        var shape = tensor.Dims.ToArray();
        if (tensor.DataType == (int)TensorProto.Types.DataType.String)
        {
            var value = OrtValue.CreateTensorWithEmptyStrings(OrtAllocator.DefaultInstance, shape);
            for (var i = 0; i < tensor.StringData.Count; i++)
            {
                value.StringTensorSetElementAt(tensor.StringData[i].Span, i);
            }

            return value;
        }

        var ortValue = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, (TensorElementType)tensor.DataType, shape);
        using var data = TensorData.FromEmbedded(tensor);
        data.Span.CopyTo(ortValue.GetTensorMutableRawData());
        return ortValue;
    }

    public static OrtValue FromSequence(SequenceProto sequence) =>
        OrtValue.CreateSequence(sequence.TensorValues.Select(FromTensorProto).ToList());

    public static OrtValue Random(TensorProto.Types.DataType type, long[] shape, Random random)
    {
        var value = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, (TensorElementType)(int)type, shape);
        var raw = value.GetTensorMutableRawData();
        switch (type)
        {
            case TensorProto.Types.DataType.Float:
                var floats = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(raw);
                for (var i = 0; i < floats.Length; i++)
                {
                    floats[i] = (float)(random.NextDouble() * 2 - 1);
                }

                break;
            case TensorProto.Types.DataType.Int64:
                var longs = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(raw);
                longs.Fill(16000); // silero's sample rate input; a plausible positive integer for other int64 inputs
                break;
            default:
                random.NextBytes(raw);
                break;
        }

        return value;
    }

    private static byte[] Fingerprint(OrtValue value)
    {
        using var stream = new MemoryStream();
        using var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
        Write(value, writer);
        writer.Flush();
        return stream.ToArray();
    }

    private static void Write(OrtValue value, BinaryWriter writer)
    {
        writer.Write((int)value.OnnxType);
        switch (value.OnnxType)
        {
            case OnnxValueType.ONNX_TYPE_TENSOR:
                var info = value.GetTensorTypeAndShape();
                writer.Write((int)info.ElementDataType);
                foreach (var d in info.Shape)
                {
                    writer.Write(d);
                }

                if (info.ElementDataType == TensorElementType.String)
                {
                    foreach (var s in value.GetStringTensorAsArray())
                    {
                        writer.Write(s);
                    }
                }
                else
                {
                    writer.Write(value.GetTensorMutableRawData());
                }

                break;
            case OnnxValueType.ONNX_TYPE_SEQUENCE:
            case OnnxValueType.ONNX_TYPE_MAP:
                var count = value.GetValueCount();
                writer.Write(count);
                for (var i = 0; i < count; i++)
                {
                    using var element = value.GetValue(i, OrtAllocator.DefaultInstance);
                    Write(element, writer);
                }

                break;
            default:
                writer.Write("unsupported:" + value.OnnxType);
                break;
        }
    }
}
