using System.IO.Compression;
using System.Text;
using Compress.Core.Calibration;
using Compress.Core.Data;
using Compress.Core.Diagnostics;
using Compress.Core.Tests.TestSupport;
using DataType = Compress.Core.Onnx.Proto.TensorProto.Types.DataType;

namespace Compress.Core.Tests.Data;

public sealed class ArrayFileTests : TempDirectoryTest
{
    [Fact]
    public void Npz_round_trips_every_common_dtype()
    {
        var path = Path.Combine(Dir, "all.npz");
        NpyArray[] arrays =
        [
            NpyArray.Create("f32", new[] { 1.5f, -2f, 3f, 4f, 5f, 6f }, 2, 3),
            NpyArray.Create("f64", new[] { 1.5, -2.0 }, 2),
            NpyArray.Create("f16", new[] { (Half)1.5, (Half)(-2) }, 2),
            NpyArray.Create("i8", new sbyte[] { -1, 2 }, 2),
            NpyArray.Create("u8", new byte[] { 1, 255 }, 2),
            NpyArray.Create("i16", new short[] { -300, 2 }, 2),
            NpyArray.Create("i32", new[] { -70000, 2 }, 2),
            NpyArray.Create("i64", new long[] { -1L << 40, 2 }, 2),
            NpyArray.Create("u16", new ushort[] { 65535, 2 }, 2),
            NpyArray.Create("u32", new uint[] { 4000000000u, 2 }, 2),
            NpyArray.Create("u64", new ulong[] { ulong.MaxValue, 2 }, 2),
            NpyArray.Create("b", new[] { true, false }, 2),
            NpyArray.Create("scalar", new[] { 7f }),
        ];
        ArrayFile.Write(path, arrays);
        var read = ArrayFile.Read(path);
        foreach (var a in arrays)
        {
            Assert.Equal(a.ElementType, read[a.Name].ElementType);
            Assert.Equal(a.Shape, read[a.Name].Shape);
            Assert.Equal(a.Data, read[a.Name].Data);
        }

        var bytes = File.ReadAllBytes(path);
        ArrayFile.Write(path, arrays);
        Assert.Equal(bytes, File.ReadAllBytes(path)); // deterministic archive
    }

    /// <summary>
    /// Writers of one path in one process (test classes making the same cached data on a fresh machine) each write
    /// their own temporary file: with one shared name, one writer truncated the other's file or found it moved away.
    /// </summary>
    [Fact]
    public void Concurrent_writers_of_one_path_leave_a_whole_file()
    {
        var path = Path.Combine(Dir, "shared.npz");
        var array = NpyArray.Create("x", Enumerable.Range(0, 1 << 18).Select(i => (float)Math.Sin(i)).ToArray(), 1 << 10, 1 << 8);
        var failures = new System.Collections.Concurrent.ConcurrentBag<Exception>();
        using var start = new Barrier(4);
        var writers = Enumerable.Range(0, 4).Select(_ => new Thread(() =>
        {
            try
            {
                start.SignalAndWait();
                for (var i = 0; i < 5; i++)
                {
                    ArrayFile.Write(path, array);
                }
            }
            catch (Exception e)
            {
                failures.Add(e);
            }
        })).ToList();
        writers.ForEach(w => w.Start());
        writers.ForEach(w => w.Join());

        Assert.Empty(failures);
        Assert.Equal(array.Data, ArrayFile.Read(path)["x"].Data);
        Assert.Equal([Path.GetFileName(path)], Directory.GetFiles(Dir).Select(Path.GetFileName));
    }

    [Fact]
    public void Big_endian_and_version_2_headers_are_read()
    {
        var path = Path.Combine(Dir, "be.npy");
        var header = "{'descr': '>i4', 'fortran_order': False, 'shape': (2,), }";
        var padded = header.PadRight(64 - 12 - 1) + "\n";
        using (var file = File.Create(path))
        {
            file.Write([0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 2, 0]);
            file.Write(BitConverter.GetBytes((uint)padded.Length));
            file.Write(Encoding.Latin1.GetBytes(padded));
            file.Write([0, 0, 1, 0, 0xFF, 0xFF, 0xFF, 0xFE]);
        }

        var array = ArrayFile.Read(path)["be"];
        Assert.Equal(DataType.Int32, array.ElementType);
        Assert.Equal(new[] { 256, -2 }, array.As<int>().ToArray());
    }

    public static TheoryData<string, byte[], string, string> BadFiles => new()
    {
        { "fortran.npy", Npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16), "CMP0022", "Fortran order" },
        { "object.npy", Npy("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", 16), "CMP0022", "element type '|O'" },
        { "truncated.npy", Npy("{'descr': '<f4', 'fortran_order': False, 'shape': (10, 10), }", 100), "CMP0021", "truncated" },
        { "nomagic.npy", Encoding.ASCII.GetBytes("not numpy at all"), "CMP0021", "bad magic" },
        { "noshape.npy", Npy("{'descr': '<f4', 'fortran_order': False, }", 0), "CMP0021", "no 'shape'" },
        { "random.npz", Enumerable.Range(0, 300).Select(i => (byte)(i * 37)).ToArray(), "CMP0021", "not a readable" },
        { "empty.npz", EmptyZip(), "CMP0021", "holds no .npy arrays" },
    };

    [Theory]
    [MemberData(nameof(BadFiles))]
    public void Bad_data_files_are_refused_with_their_path(string name, byte[] bytes, string code, string message)
    {
        var path = Path.Combine(Dir, name);
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<CompressException>(() => ArrayFile.Read(path));
        Assert.Equal(code, e.Diagnostic.Code);
        Assert.Equal(path, e.Diagnostic.File);
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void Missing_data_file_is_CMP0020()
    {
        var e = Assert.Throws<CompressException>(() => ArrayFile.Read(Path.Combine(Dir, "missing.npz")));
        Assert.Equal(DiagnosticCodes.DataNotFound, e.Diagnostic.Code);
    }

    [Fact]
    public void Arrays_must_match_the_model_inputs()
    {
        var model = Models.Dense();
        var wrongName = Path.Combine(Dir, "names.npz");
        ArrayFile.Write(wrongName, NpyArray.Create("a", new float[128], 2, 64), NpyArray.Create("b", new float[128], 2, 64));
        Assert.Contains("no array named 'x'", Mismatch(wrongName, null));

        var wrongType = Path.Combine(Dir, "type.npz");
        ArrayFile.Write(wrongType, NpyArray.Create("x", new double[128], 2, 64));
        Assert.Contains("holds double but model input 'x' takes float", Mismatch(wrongType, null));

        var wrongShape = Path.Combine(Dir, "shape.npz");
        ArrayFile.Write(wrongShape, NpyArray.Create("x", new float[126], 2, 63));
        Assert.Contains("needs 64 in dimension 1", Mismatch(wrongShape, null));

        var labels = Path.Combine(Dir, "labels.npz");
        ArrayFile.Write(labels, NpyArray.Create("x", new float[128], 2, 64), NpyArray.Create("y", new long[3], 3));
        Assert.Contains("has 3 entries for 2 samples", Mismatch(labels, "y"));

        var goodPath = Path.Combine(Dir, "good.npz");
        ArrayFile.Write(goodPath, NpyArray.Create("x", new float[128], 2, 64), NpyArray.Create("y", new long[] { 3, 4 }, 2));
        var good = CalibrationSet.Load(goodPath, model, "y", samples: 1, seed: 5);
        Assert.Equal(1, good.Count);
        Assert.Equal(new long[] { 1, 64 }, good.Inputs["x"].Shape);

        string Mismatch(string path, string? labelName)
        {
            var e = Assert.Throws<CompressException>(() => CalibrationSet.Load(path, model, labelName, null, 0));
            Assert.Equal(DiagnosticCodes.DataMismatch, e.Diagnostic.Code);
            return e.Message;
        }
    }

    [Fact]
    public void Seeded_subsets_are_reproducible()
    {
        var path = Path.Combine(Dir, "many.npz");
        ArrayFile.Write(path, NpyArray.Create("x", Enumerable.Range(0, 100 * 64).Select(i => (float)(i / 64)).ToArray(), 100, 64));
        var a = CalibrationSet.Load(path, Models.Dense(), null, 10, 42);
        var b = CalibrationSet.Load(path, Models.Dense(), null, 10, 42);
        var c = CalibrationSet.Load(path, Models.Dense(), null, 10, 43);
        Assert.Equal(a.Inputs["x"].Data, b.Inputs["x"].Data);
        Assert.NotEqual(a.Inputs["x"].Data, c.Inputs["x"].Data);
    }

    private static byte[] Npy(string header, int dataBytes)
    {
        var padded = header.PadRight(64 - 10 - 1) + "\n";
        return [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0, (byte)padded.Length, 0, .. Encoding.Latin1.GetBytes(padded), .. new byte[dataBytes]];
    }

    private static byte[] EmptyZip()
    {
        using var memory = new MemoryStream();
        using (var zip = new ZipArchive(memory, ZipArchiveMode.Create, leaveOpen: true))
        {
            zip.CreateEntry("readme.txt");
        }

        return memory.ToArray();
    }
}
