using System.Security.Cryptography;
using LeakTools.Core.Interop;
using LeakTools.Core.ProcFs;

namespace LeakTools.Core.Tracing.Agent;

/// <summary>Where the agent library and the controller's socket live so the target can reach them:
/// the staged library itself when the target shares our filesystem view and may read it; else a
/// copy in a world-readable, executable temporary folder of the target's own root (a container's
/// filesystem, reached through /proc/PID/root, as perf and gdb do). Paths come in pairs: as we
/// open them, and as the target names them.</summary>
internal static class AgentPlacement
{
    public const string LibraryName = "libleaktools-agent.so";
    private const ulong ST_NOEXEC = 8;

    /// <summary>The staged agent: <c>native/linux-x64/libleaktools-agent.so</c> beside
    /// LeakTools.Core.dll, or LEAKTOOLS_AGENT_PATH.</summary>
    public static string? FindStaged()
    {
        string? env = Environment.GetEnvironmentVariable("LEAKTOOLS_AGENT_PATH");
        if (!string.IsNullOrEmpty(env)) return File.Exists(env) ? env : null;
        string dir = Path.GetDirectoryName(typeof(AgentPlacement).Assembly.Location) ?? AppContext.BaseDirectory;
        string path = Path.Combine(dir, "native", "linux-x64", LibraryName);
        return File.Exists(path) ? path : null;
    }

    /// <summary>The prefix through which we see the target's files: "" when it shares our mount
    /// namespace and root, else /proc/PID/root.</summary>
    public static string RootPrefix(int pid, ProcRoot root)
    {
        try
        {
            string? ns = new FileInfo(root.File(pid, "ns/mnt")).LinkTarget;
            string? ours = new FileInfo("/proc/self/ns/mnt").LinkTarget;
            string? r = new FileInfo(root.File(pid, "root")).LinkTarget;
            if (ns == ours && (r is null || r == "/")) return "";
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
        }
        return root.File(pid, "root");
    }

    /// <summary>The library path for the target (and where we read that file).
    /// <paramref name="avoid"/> is a path the target already has a different agent build loaded from
    /// (dlopen of the same name would hand back that one).</summary>
    public static (string HostPath, string TargetPath) PlaceLibrary(int pid, string staged, ProcRoot root, int targetUid, string? avoid = null)
    {
        string prefix = RootPrefix(pid, root);
        if (prefix.Length == 0 && staged != avoid && (targetUid == 0 || WorldReadable(staged)) && !NoExec(staged)) return (staged, staged);
        string hash = ShortHash(staged);
        foreach (string dir in new[] { "/tmp", "/var/tmp", "/dev/shm", "/run" })
        {
            string hostDir = prefix + dir;
            if (!Directory.Exists(hostDir) || NoExec(hostDir)) continue;
            string folder = $"{dir}/leaktools-agent-{hash}";
            string file = $"{folder}/{LibraryName}";
            try
            {
                Directory.CreateDirectory(prefix + folder);
                File.SetUnixFileMode(prefix + folder, (UnixFileMode)0x1ED); // 0755
                if (!File.Exists(prefix + file) || ShortHash(prefix + file) != hash)
                {
                    string temp = $"{prefix}{file}.{Environment.ProcessId}.tmp";
                    File.Copy(staged, temp, overwrite: true);
                    File.SetUnixFileMode(temp, (UnixFileMode)0x1A4); // 0644
                    File.Move(temp, prefix + file, overwrite: true);
                }
                return (prefix + file, file);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
            }
        }
        throw new LeakToolsException(FailureKind.NotSupported, "AgentUnavailable",
            $"No folder of process {pid}'s filesystem can hold the agent library (tried /tmp, /var/tmp, /dev/shm and /run: missing, read-only or mounted noexec).", pid);
    }

    /// <summary>A fresh private folder for the controller's socket, in the target's /tmp (or /dev/shm, /run).</summary>
    public static (string HostDir, string TargetDir) SocketFolder(int pid, ProcRoot root)
    {
        string prefix = RootPrefix(pid, root);
        string name = "leaktools-" + Convert.ToHexString(RandomNumberGenerator.GetBytes(8)).ToLowerInvariant();
        foreach (string dir in new[] { "/tmp", "/dev/shm", "/run", "/var/tmp" })
        {
            if (!Directory.Exists(prefix + dir)) continue;
            try
            {
                Directory.CreateDirectory(prefix + dir + "/" + name);
                // others may pass through (a target running as another user connects) but not list it
                File.SetUnixFileMode(prefix + dir + "/" + name, (UnixFileMode)0x1C9); // 0711
                return (prefix + dir + "/" + name, dir + "/" + name);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
            }
        }
        throw new LeakToolsException(FailureKind.NotSupported, "AgentUnavailable",
            $"No writable folder in process {pid}'s filesystem for the agent's socket (tried /tmp, /dev/shm, /run, /var/tmp).", pid);
    }

    public static string ShortHash(string path)
    {
        using FileStream f = File.OpenRead(path);
        return Convert.ToHexString(SHA256.HashData(f)).Substring(0, 16).ToLowerInvariant();
    }

    /// <summary><see cref="ShortHash"/>, or null when the file cannot be read.</summary>
    public static string? TryShortHash(string path)
    {
        try { return ShortHash(path); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { return null; }
    }

    private static bool WorldReadable(string path)
    {
        try
        {
            if ((File.GetUnixFileMode(path) & UnixFileMode.OtherRead) == 0) return false;
            for (string? d = Path.GetDirectoryName(path); !string.IsNullOrEmpty(d); d = Path.GetDirectoryName(d))
            {
                if ((File.GetUnixFileMode(d) & UnixFileMode.OtherExecute) == 0) return false;
            }
            return true;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static unsafe bool NoExec(string path)
    {
        LibcFiles.StatVfsBuf b;
        return LibcFiles.StatVfs(path, &b) == 0 && (b.f_flag & ST_NOEXEC) != 0;
    }
}
