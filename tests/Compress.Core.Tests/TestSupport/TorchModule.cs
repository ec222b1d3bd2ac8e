using System.Runtime.CompilerServices;
using Compress.Core.Torch;

namespace Compress.Core.Tests.TestSupport;

/// <summary>
/// Loads TorchSharp's native library (through the patched copy where the system libstdc++ is too old) before any test
/// runs: a test that touched <c>torch</c> first, before any pipeline had loaded it, left the library unloadable for
/// every later test in the process, so the outcome depended on the order xunit chose.
/// </summary>
internal static class TorchModule
{
    [ModuleInitializer]
    internal static void Load() => TorchRuntime.EnsureLoaded();
}
