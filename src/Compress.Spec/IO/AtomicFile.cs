using System;
using System.Diagnostics;
using System.IO;

namespace Compress.Spec.IO
{
    /// <summary>
    /// Writes a whole text file or nothing: a temporary file in the same folder, then a rename over the target (so a
    /// reader in a parallel build never sees a missing or half-written file). Shared by the CLI and the MSBuild tasks;
    /// the analyzers, which do no file access, never call it.
    /// </summary>
    public static class AtomicFile
    {
        public static void WriteAllText(string path, string text)
        {
            var full = Path.GetFullPath(path);
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            var temp = $"{full}.{Process.GetCurrentProcess().Id}.{Guid.NewGuid():N}.tmp";
            try
            {
                File.WriteAllText(temp, text);
                if (File.Exists(full))
                {
                    File.Replace(temp, full, null);
                }
                else
                {
                    File.Move(temp, full);
                }
            }
            finally
            {
                if (File.Exists(temp))
                {
                    File.Delete(temp);
                }
            }
        }

        /// <summary>Writes only when the content differs, so an unchanged file keeps its timestamp (incremental builds read it).</summary>
        public static bool WriteAllTextIfChanged(string path, string text)
        {
            if (File.Exists(path) && File.ReadAllText(path) == text)
            {
                return false;
            }

            WriteAllText(path, text);
            return true;
        }
    }
}
