using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using TorchSharp;

namespace Compress.Runtime.TorchSharp;

/// <summary>TorchSharp's native library cannot be loaded on this machine; the message names the cause.</summary>
public sealed class TorchNativeLoadException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// Makes TorchSharp's native library load, or fails with a diagnostic that names the cause.
/// <para>
/// TorchSharp 0.107's <c>libLibTorchSharp.so</c> is built with GCC 13 and requires <c>GLIBCXX_3.4.32</c>;
/// Debian 12 and Ubuntu 22.04 ship libstdc++ up to 3.4.30, so the library fails to load and TorchSharp
/// surfaces only a bare <see cref="TypeInitializationException"/>. The one symbol bound to that version is
/// <c>std::ios_base_library_init()</c>, a link-time marker GCC 13 emits with no relocation against it. So we
/// write a copy of the library in which that version requirement is weak (a missing weak version is not
/// fatal to the dynamic loader), preload libtorch from the package folder so the copy's dependencies
/// resolve by soname, and load the copy. TorchSharp's own probe then finds the loaded library by its soname.
/// Any other missing version is a real incompatibility and is reported, not patched.
/// </para>
/// Call <see cref="EnsureLoaded"/> before the first use of <c>torch</c>. The compress CLI and the loaders of this
/// package (<see cref="StateDictLoader"/>, <see cref="TorchScriptModel"/>) do, so an app on Debian 12 loads libtorch too.
/// </summary>
public static partial class NativeTorch
{
    private const string LibraryFile = "libLibTorchSharp.so";

    // Symbols that may safely lose their version binding: markers with no code or data behind them.
    private static readonly HashSet<string> MarkerSymbols = ["_ZSt21ios_base_library_initv"];

    private static readonly object Gate = new();
    private static bool s_loaded;

    /// <summary>How the native library was loaded: "as shipped", or the path of the patched copy.</summary>
    public static string? LoadedFrom { get; private set; }

    /// <summary>Loads libtorch once (patching the marker version requirement where needed); throws <see cref="TorchNativeLoadException"/> when it cannot.</summary>
    public static void EnsureLoaded()
    {
        lock (Gate)
        {
            if (s_loaded)
            {
                return;
            }

            var directories = NativeDirectories();
            if (OperatingSystem.IsLinux() && directories.FirstOrDefault(d => File.Exists(Path.Combine(d, LibraryFile))) is { } directory)
            {
                // libtorch may sit in another folder than LibTorchSharp (each package has its own folder in the NuGet
                // cache, where the CLI finds them when run from the Compress.Build package): load it first, by path.
                PreloadDependencies(directories);
                LoadedFrom = LoadOrPatch(directory);
            }

            try
            {
                torch.InitializeDeviceType(DeviceType.CPU);
            }
            catch (Exception e) when (e is TypeInitializationException or DllNotFoundException or NotSupportedException)
            {
                throw new TorchNativeLoadException($"TorchSharp's native library (libtorch) could not be loaded: {Innermost(e).Message}", e);
            }

            s_loaded = true;
        }
    }

    private static string LoadOrPatch(string directory)
    {
        var original = Path.Combine(directory, LibraryFile);
        var (ok, error) = TryLoad(original);
        if (ok)
        {
            return "as shipped";
        }

        var image = File.ReadAllBytes(original);
        var patched = image;
        var weakened = new List<string>();
        for (var attempt = 0; attempt < 8 && !ok; attempt++)
        {
            var missing = MissingVersion().Match(error);
            if (!missing.Success)
            {
                throw Failure($"loading {original} failed: {error}");
            }

            var version = missing.Groups[1].Value;
            var needs = ElfVersionNeeds.Read(patched);
            var requirement = needs.Requirements.FirstOrDefault(r => r.Version == version && !r.IsWeak);
            var symbols = requirement is null ? [] : needs.SymbolsOf(requirement);
            if (requirement is null || symbols.Count == 0 || !symbols.All(MarkerSymbols.Contains))
            {
                throw Failure($"{LibraryFile} needs {version} from libstdc++ (for {string.Join(", ", symbols.Take(5))}), which this machine's " +
                    "libstdc++ does not provide. Install a libstdc++6 from GCC 13 or newer.");
            }

            patched = needs.WithWeak(requirement);
            weakened.Add(version);
            var copy = WriteCopy(image, patched);
            (ok, error) = TryLoad(copy);
            if (ok)
            {
                return copy;
            }
        }

        throw Failure($"the patched copy of {LibraryFile} (weak {string.Join(", ", weakened)}) still fails to load: {error}");
    }

    private static (bool Ok, string Error) TryLoad(string path)
    {
        try
        {
            NativeLibrary.Load(path);
            return (true, "");
        }
        catch (DllNotFoundException e)
        {
            return (false, e.Message);
        }
    }

    /// <summary>The copy sits in a per-user cache keyed by the original's hash, written atomically.</summary>
    private static string WriteCopy(byte[] original, byte[] patched)
    {
        var key = Convert.ToHexString(SHA256.HashData(original))[..16].ToLowerInvariant();
        var folder = Path.Combine(CacheRoot(), "native", key + "-" + Convert.ToHexString(SHA256.HashData(patched))[..8].ToLowerInvariant());
        var path = Path.Combine(folder, LibraryFile);
        if (File.Exists(path) && new FileInfo(path).Length == patched.Length && File.ReadAllBytes(path).AsSpan().SequenceEqual(patched))
        {
            return path;
        }

        Directory.CreateDirectory(folder);
        var temp = path + $".{Environment.ProcessId}.tmp";
        File.WriteAllBytes(temp, patched);
        File.Move(temp, path, overwrite: true);
        return path;
    }

    private static string CacheRoot()
    {
        var configured = Environment.GetEnvironmentVariable("COMPRESS_CACHE");
        if (!string.IsNullOrEmpty(configured))
        {
            return configured;
        }

        var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        var root = !string.IsNullOrEmpty(xdg) ? xdg : !string.IsNullOrEmpty(home) ? Path.Combine(home, ".cache") : Path.GetTempPath();
        return Path.Combine(root, "compress-build");
    }

    /// <summary>libtorch's libraries, each from the first folder that has it: LibTorchSharp's run path ($ORIGIN) does not find
    /// them from a patched copy, nor from the NuGet cache where every package has its own folder.</summary>
    private static void PreloadDependencies(IReadOnlyList<string> directories)
    {
        foreach (var dependency in new[] { "libc10.so", "libtorch_cpu.so", "libtorch.so" })
        {
            if (directories.Select(d => Path.Combine(d, dependency)).FirstOrDefault(File.Exists) is { } path)
            {
                var (ok, error) = TryLoad(path);
                if (!ok)
                {
                    throw Failure($"libtorch dependency {dependency} failed to load: {error}");
                }
            }
        }
    }

    private static List<string> NativeDirectories()
    {
        var candidates = new List<string>();
        if (AppContext.GetData("NATIVE_DLL_SEARCH_DIRECTORIES") is string searchDirectories)
        {
            candidates.AddRange(searchDirectories.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries));
        }

        candidates.Add(AppContext.BaseDirectory);
        candidates.Add(Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native"));
        return candidates;
    }

    private static Exception Innermost(Exception e) => e.InnerException is null ? e : Innermost(e.InnerException);

    private static TorchNativeLoadException Failure(string message) => new("TorchSharp cannot run on this machine: " + message);

    [GeneratedRegex(@"version `([A-Za-z_]+[0-9.]+)' not found")]
    private static partial Regex MissingVersion();
}
