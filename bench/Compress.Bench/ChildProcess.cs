using System.Diagnostics;
using System.Globalization;

namespace Compress.Bench;

/// <summary>
/// A benchmark phase in a process of its own, so its peak resident memory (VmHWM) is its own: this program run again
/// with a hidden verb, which prints one tab-separated <c>RESULT</c> line.
/// </summary>
internal static class ChildProcess
{
    /// <summary>Runs <c>verb args…</c> in a child and returns the fields of its RESULT line after "RESULT".</summary>
    public static string[] Run(string verb, params string[] args)
    {
        var start = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, UseShellExecute = false };
        if (!Environment.ProcessPath!.EndsWith("Compress.Bench", StringComparison.Ordinal))
        {
            start.ArgumentList.Add(typeof(ChildProcess).Assembly.Location);
        }

        start.ArgumentList.Add(verb);
        foreach (var a in args)
        {
            start.ArgumentList.Add(a);
        }

        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        var line = output.Split('\n').FirstOrDefault(l => l.StartsWith("RESULT\t", StringComparison.Ordinal))
            ?? throw new InvalidOperationException($"{verb} {string.Join(' ', args)} failed (exit {process.ExitCode}):\n{output}");
        return line.Split('\t')[1..];
    }

    /// <summary>This process's peak resident memory so far, in bytes.</summary>
    public static long PeakResidentBytes()
    {
        var line = File.ReadLines("/proc/self/status").First(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
    }
}
