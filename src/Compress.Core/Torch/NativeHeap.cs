using System.Runtime.InteropServices;

namespace Compress.Core.Torch;

/// <summary>
/// Keeps the process's native heap from holding on to freed tensor memory. glibc serves large blocks by mmap and
/// returns them on free, but after the first such free it raises its mmap threshold (up to 32 MB), so later
/// layer-sized tensors come from the main heap and stay counted in the process's memory after they are freed:
/// a model's worth of temporaries per pass. Fixing the threshold at 1 MB turns that adjustment off (mallopt).
/// </summary>
internal static partial class NativeHeap
{
    private const int MmapThreshold = -3; // M_MMAP_THRESHOLD
    private static int _done;

    public static void ReturnLargeBlocks()
    {
        if (!OperatingSystem.IsLinux() || Interlocked.Exchange(ref _done, 1) == 1)
        {
            return;
        }

        try
        {
            _ = mallopt(MmapThreshold, 1 << 20);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            // Not glibc (musl has no mallopt): nothing to adjust.
        }
    }

    [LibraryImport("libc", EntryPoint = "mallopt")]
    private static partial int mallopt(int parameter, int value);
}
