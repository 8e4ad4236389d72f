using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;

namespace LeakTools.Tests.Shared;

/// <summary>Compiles the C programs under tests/fixtures with the machine's gcc, once per source
/// and flag set, into a cache folder under the temp directory (world-readable, so fixtures can
/// also run as another user).</summary>
public static class FixtureBuilder
{
    private static readonly object s_lock = new();

    public static string CacheDir { get; } = Path.Combine(Path.GetTempPath(), "leaktools-fixtures");

    /// <summary>Builds tests/fixtures/<paramref name="source"/> with <paramref name="flags"/>;
    /// <paramref name="outputName"/> names the binary (comm is its first 15 characters);
    /// <paramref name="compiler"/> is gcc unless given (musl-gcc for a musl program).</summary>
    public static string Build(string source, string flags = "-O0 -g", string? outputName = null, string compiler = "gcc")
    {
        string sourcePath = Path.Combine(RepoPaths.Fixtures, source);
        string text = File.ReadAllText(sourcePath);
        string hash = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(text + "\0" + flags + (compiler == "gcc" ? "" : "\0" + compiler)))).Substring(0, 16).ToLowerInvariant();
        string name = outputName ?? Path.GetFileNameWithoutExtension(source);
        string dir = Path.Combine(CacheDir, hash);
        string output = Path.Combine(dir, name);
        lock (s_lock)
        {
            if (File.Exists(output)) return output;
            Directory.CreateDirectory(dir);
            File.SetUnixFileMode(CacheDir, (UnixFileMode)0x1ED); // 0755
            File.SetUnixFileMode(dir, (UnixFileMode)0x1ED);
            string temp = output + ".tmp" + Environment.ProcessId;
            var psi = new ProcessStartInfo(compiler)
            {
                RedirectStandardError = true,
                RedirectStandardOutput = true,
            };
            foreach (string f in flags.Split(' ', StringSplitOptions.RemoveEmptyEntries)) psi.ArgumentList.Add(f);
            psi.ArgumentList.Add("-o");
            psi.ArgumentList.Add(temp);
            psi.ArgumentList.Add(sourcePath);
            psi.ArgumentList.Add("-lpthread");
            using var gcc = Process.Start(psi)!;
            string stderr = gcc.StandardError.ReadToEnd();
            gcc.WaitForExit();
            if (gcc.ExitCode != 0) throw new InvalidOperationException($"{compiler} {flags} {source} failed:\n{stderr}");
            File.Move(temp, output, overwrite: true);
            return output;
        }
    }
}
