using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;

namespace Compress.Spec.Kernels
{
    /// <summary>
    /// ONNX Runtime's CPU kernel registrations for the shipped version: which (domain, op, opset range) has a kernel and
    /// with which element types. Read from Kernels/ort-cpu-kernels.tsv, which eng/KernelProbe checks against ONNX
    /// Runtime itself (a one-node model per op, version and type). Shared by the engine and the analyzers.
    /// </summary>
    public sealed class OrtKernelTable
    {
        private readonly List<KernelRow> _rows;

        private OrtKernelTable(List<KernelRow> rows) => _rows = rows;

        public static OrtKernelTable Cpu { get; } = Parse(ReadResource());

        public IReadOnlyList<KernelRow> Rows => _rows;

        /// <summary>The kernel row that serves <paramref name="op"/> at <paramref name="opset"/>, or null.</summary>
        public KernelRow? Find(string domain, string op, long opset)
        {
            var d = string.IsNullOrEmpty(domain) ? "ai.onnx" : domain;
            return _rows.Where(r => r.Domain == d && r.Op == op && r.Since <= opset && (r.Until is null || opset <= r.Until))
                .OrderByDescending(r => r.Since).FirstOrDefault();
        }

        /// <summary>Whether any type constraint of the op's kernel lists <paramref name="elementType"/> (e.g. "float16").</summary>
        public bool Supports(string domain, string op, long opset, string elementType) =>
            Find(domain, op, opset) is { } row && row.Types.Values.Any(v => v.Contains(elementType));

        /// <summary>The table's text form: header, then domain, op, since, until (empty: open), constraints (<c>T=float,int8;T1=…</c>).</summary>
        public static OrtKernelTable Parse(string text)
        {
            var rows = new List<KernelRow>();
            foreach (var line in text.Split('\n').Skip(1))
            {
                var f = line.TrimEnd('\r').Split('\t');
                if (f.Length < 5)
                {
                    continue;
                }

                var types = f[4].Split(new[] { ';' }, StringSplitOptions.RemoveEmptyEntries)
                    .Select(t => t.Split(new[] { '=' }, 2)).Where(p => p.Length == 2)
                    .GroupBy(p => p[0]).ToDictionary(g => g.Key, g => g.First()[1].Split(','));
                rows.Add(new KernelRow(f[0], f[1], int.Parse(f[2]), f[3].Length == 0 ? (int?)null : int.Parse(f[3]), types));
            }

            return new OrtKernelTable(rows);
        }

        public static string ReadResource()
        {
            using var stream = typeof(OrtKernelTable).Assembly.GetManifestResourceStream("ort-cpu-kernels.tsv")
                ?? throw new InvalidOperationException("ort-cpu-kernels.tsv resource missing");
            using var reader = new StreamReader(stream);
            return reader.ReadToEnd();
        }
    }

    public sealed class KernelRow
    {
        public KernelRow(string domain, string op, int since, int? until, IReadOnlyDictionary<string, string[]> types)
        {
            Domain = domain;
            Op = op;
            Since = since;
            Until = until;
            Types = types;
        }

        public string Domain { get; }

        public string Op { get; }

        public int Since { get; }

        public int? Until { get; }

        /// <summary>Type constraint name → element types (ONNX names).</summary>
        public IReadOnlyDictionary<string, string[]> Types { get; }
    }
}
