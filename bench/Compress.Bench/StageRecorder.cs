using System.Diagnostics;
using System.Globalization;

namespace Compress.Bench;

/// <summary>
/// Time and peak resident memory per stage of one <c>compress run</c>, from its progress lines: a stage begins at a
/// step's own line (<c>prune/sparsegpt (spec line 2)</c>) or at <c>storage:</c> / <c>validate:</c>, and loading is
/// what comes before the first. Resident memory is sampled every 20 ms (the process's VmHWM gives the overall peak).
/// </summary>
internal sealed class StageRecorder : IDisposable
{
    private readonly Stopwatch _watch = Stopwatch.StartNew();
    private readonly List<(string Name, double Start, long Peak)> _stages = [("load", 0, 0)];
    private readonly Timer _timer;
    private readonly object _gate = new();

    public StageRecorder() => _timer = new Timer(_ => Sample(), null, 0, 20);

    public void Progress(string message)
    {
        var name = message.Contains(" (spec line ", StringComparison.Ordinal) ? message[..message.IndexOf(" (spec line ", StringComparison.Ordinal)]
            : message.StartsWith("storage:", StringComparison.Ordinal) ? "storage"
            : message.StartsWith("validate:", StringComparison.Ordinal) ? "validate"
            : null;
        if (name is not null)
        {
            lock (_gate)
            {
                _stages.Add((name, _watch.Elapsed.TotalSeconds, Resident()));
            }
        }
    }

    /// <summary><c>name seconds peakMB</c> per stage, joined by <c>;</c>.</summary>
    public string Summary()
    {
        Sample();
        lock (_gate)
        {
            var end = _watch.Elapsed.TotalSeconds;
            return string.Join(";", _stages.Select((s, i) => string.Create(CultureInfo.InvariantCulture,
                $"{s.Name} {(i + 1 < _stages.Count ? _stages[i + 1].Start : end) - s.Start:0.0} {s.Peak / 1e6:0}")));
        }
    }

    private void Sample()
    {
        var resident = Resident();
        lock (_gate)
        {
            var last = _stages[^1];
            if (resident > last.Peak)
            {
                _stages[^1] = last with { Peak = resident };
            }
        }
    }

    private static long Resident()
    {
        var line = File.ReadLines("/proc/self/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
    }

    public void Dispose() => _timer.Dispose();
}
