using Compress.Core.Diagnostics;
using Compress.Runtime.TorchSharp;

namespace Compress.Core.Torch;

/// <summary>
/// The engine's entry to <see cref="NativeTorch"/> (Compress.Runtime.TorchSharp), which makes TorchSharp's native
/// library load on machines whose libstdc++ is older than the one it was built against (Debian 12): a failure
/// becomes CMP0008. Call <see cref="EnsureLoaded"/> before the first use of <c>torch</c>.
/// </summary>
public static class TorchRuntime
{
    /// <summary>How the native library was loaded: "as shipped", or the path of the patched copy.</summary>
    public static string? LoadedFrom => NativeTorch.LoadedFrom;

    public static void EnsureLoaded()
    {
        try
        {
            NativeTorch.EnsureLoaded();
            NativeHeap.ReturnLargeBlocks();
        }
        catch (TorchNativeLoadException e)
        {
            throw CompressException.Error(DiagnosticCodes.TorchNativeLoadFailed, e.Message, inner: e);
        }
    }
}
