using System.Globalization;
using System.Text.RegularExpressions;
using LeakTools.Core.Interop;

namespace LeakTools.Core.Dumps;

/// <summary>Finds core dumps and describes them as <see cref="CoreDump"/> objects: abrt problem
/// directories (ccpp-*), systemd-coredump's directory (fields from the file name and its
/// user.coredump.* xattrs), and plain cores in folders (pid, name, arguments from NT_PRPSINFO).
/// A core that cannot be read fully is still listed, with <see cref="CoreDump.Problem"/> set and a warning.</summary>
public sealed partial class CoreDumpCatalog
{
    public const string DefaultAbrtSpool = "/var/spool/abrt";
    public const string DefaultSystemdCoredumpPath = "/var/lib/systemd/coredump";

    private readonly Action<string>? _warning;

    public CoreDumpCatalog(Action<string>? warning = null) => _warning = warning;

    // ---------------------------------------------------------------- abrt

    /// <summary>Problem directories under an abrt spool; those without a coredump file are skipped.</summary>
    public IEnumerable<CoreDump> ListAbrt(string spool)
    {
        if (!Directory.Exists(spool)) yield break;
        foreach (string dir in Directory.EnumerateDirectories(spool).Order(StringComparer.Ordinal))
        {
            string name = Path.GetFileName(dir);
            if (name.EndsWith(".new", StringComparison.Ordinal)) continue; // still being written
            CoreDump? d = DescribeAbrtDirectory(dir);
            if (d is not null) yield return d;
        }
    }

    /// <summary>One abrt problem directory (the files abrt-cli list shows), or null when it holds no core.</summary>
    public CoreDump? DescribeAbrtDirectory(string dir)
    {
        string? type = ReadSmall(Path.Combine(dir, "type")) ?? ReadSmall(Path.Combine(dir, "analyzer"));
        string core = Path.Combine(dir, "coredump");
        if (!File.Exists(core))
        {
            foreach (string alt in new[] { "coredump.zst", "coredump.xz", "coredump.lz4" })
            {
                if (File.Exists(Path.Combine(dir, alt))) { core = Path.Combine(dir, alt); break; }
            }
        }
        if (!File.Exists(core) || (type is not null && !type.Equals("CCpp", StringComparison.OrdinalIgnoreCase))) return null;
        string? executable = ReadSmall(Path.Combine(dir, "executable"));
        string? reason = ReadSmall(Path.Combine(dir, "reason"));
        var d = new CoreDump
        {
            Path = core,
            Directory = dir,
            Source = CoreDumpSource.Abrt,
            Executable = executable,
            Name = executable is null ? null : Path.GetFileName(executable),
            CommandLine = ReadSmall(Path.Combine(dir, "cmdline")),
            Id = int.TryParse(ReadSmall(Path.Combine(dir, "pid")), out int pid) ? pid : null,
            Uid = uint.TryParse(ReadSmall(Path.Combine(dir, "uid")), out uint uid) ? uid : null,
            Time = long.TryParse(ReadSmall(Path.Combine(dir, "time")), out long t) ? DateTimeOffset.FromUnixTimeSeconds(t).LocalDateTime : null,
            Package = ReadSmall(Path.Combine(dir, "package")) ?? ReadSmall(Path.Combine(dir, "pkg_name")),
            Reason = reason,
            Signal = SignalFromReason(reason),
            Size = new FileInfo(core).Length,
        };
        Enrich(d);
        return d;
    }

    /// <summary>"x killed by SIGABRT" or "killed by signal 6" -> 6.</summary>
    public static int? SignalFromReason(string? reason)
    {
        if (reason is null) return null;
        Match m = SigName().Match(reason);
        if (m.Success) return SignalNames.Number(m.Groups[1].Value);
        m = SigNumber().Match(reason);
        return m.Success ? int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) : null;
    }

    [GeneratedRegex(@"\bSIG([A-Z]+[0-9]*)\b")]
    private static partial Regex SigName();

    [GeneratedRegex(@"signal (\d+)")]
    private static partial Regex SigNumber();

    // ---------------------------------------------------------------- systemd-coredump

    public IEnumerable<CoreDump> ListSystemd(string directory)
    {
        if (!Directory.Exists(directory)) yield break;
        foreach (string file in Directory.EnumerateFiles(directory, "core.*").Order(StringComparer.Ordinal))
        {
            CoreDump? d = DescribeSystemdFile(file);
            if (d is not null) yield return d;
        }
    }

    /// <summary>core.COMM.UID.BOOTID.PID.USEC[.zst|.xz|.lz4]; COMM is \x-escaped and may hold dots,
    /// so the fields are taken from the right. xattrs (user.coredump.*) win where present.</summary>
    public CoreDump? DescribeSystemdFile(string file)
    {
        string name = Path.GetFileName(file);
        if (name.StartsWith(".#", StringComparison.Ordinal)) return null; // being written
        Match m = SystemdName().Match(name);
        if (!m.Success) return null;
        var d = new CoreDump
        {
            Path = file,
            Source = CoreDumpSource.SystemdCoredump,
            Name = Unescape(m.Groups["comm"].Value),
            Uid = uint.Parse(m.Groups["uid"].Value, CultureInfo.InvariantCulture),
            Id = int.Parse(m.Groups["pid"].Value, CultureInfo.InvariantCulture),
            Time = FromMicroseconds(m.Groups["usec"].Value),
            Compression = m.Groups["ext"].Value switch { "zst" => "zstd", "" => null, string e => e },
            Size = new FileInfo(file).Length,
        };
        string? x;
        if ((x = LibcFiles.ReadXattr(file, "user.coredump.pid")) is not null && int.TryParse(x, out int pid)) d.Id = pid;
        if ((x = LibcFiles.ReadXattr(file, "user.coredump.uid")) is not null && uint.TryParse(x, out uint uid)) d.Uid = uid;
        if ((x = LibcFiles.ReadXattr(file, "user.coredump.signal")) is not null && int.TryParse(x, out int sig)) d.Signal = sig;
        if ((x = LibcFiles.ReadXattr(file, "user.coredump.exe")) is not null) d.Executable = x;
        if ((x = LibcFiles.ReadXattr(file, "user.coredump.comm")) is not null) d.Name = x;
        if ((x = LibcFiles.ReadXattr(file, "user.coredump.timestamp")) is not null) d.Time = FromMicroseconds(x) ?? d.Time;
        Enrich(d);
        return d;
    }

    [GeneratedRegex(@"^core\.(?<comm>.+)\.(?<uid>\d+)\.(?<boot>[0-9a-f]{32})\.(?<pid>\d+)\.(?<usec>\d+)(?:\.(?<ext>zst|xz|lz4))?$")]
    private static partial Regex SystemdName();

    private static DateTime? FromMicroseconds(string text) =>
        long.TryParse(text, out long us) ? DateTimeOffset.FromUnixTimeMilliseconds(us / 1000).LocalDateTime : null;

    /// <summary>systemd escapes unusual characters of comm as \xNN.</summary>
    private static string Unescape(string s) =>
        s.Contains("\\x", StringComparison.Ordinal)
            ? Regex.Replace(s, @"\\x([0-9a-fA-F]{2})", m => ((char)Convert.ToInt32(m.Groups[1].Value, 16)).ToString())
            : s;

    // ---------------------------------------------------------------- plain files

    /// <summary>Cores in a folder (files named core, core.*, *.core), or one file.</summary>
    public IEnumerable<CoreDump> ListFiles(string path, bool recurse = false)
    {
        if (File.Exists(path))
        {
            CoreDump? one = DescribeFile(path, explicitFile: true);
            if (one is not null) yield return one;
            yield break;
        }
        if (!Directory.Exists(path)) yield break;
        var options = new EnumerationOptions { RecurseSubdirectories = recurse, IgnoreInaccessible = true, AttributesToSkip = FileAttributes.None };
        foreach (string file in Directory.EnumerateFiles(path, "*", options).Order(StringComparer.Ordinal))
        {
            string name = Path.GetFileName(file);
            if (name.StartsWith('.')) continue; // our own partial files, editors' temporaries
            if (!(name == "core" || name.StartsWith("core.", StringComparison.Ordinal) || name.EndsWith(".core", StringComparison.Ordinal) ||
                  name.StartsWith("coredump", StringComparison.Ordinal))) continue;
            CoreDump? d = DescribeFile(file, explicitFile: false);
            if (d is not null) yield return d;
        }
    }

    /// <summary>Describes a plain (or compressed) core from its own notes. Files that are not cores
    /// are skipped silently unless named explicitly.</summary>
    public CoreDump? DescribeFile(string file, bool explicitFile = true)
    {
        var info = new FileInfo(file);
        var d = new CoreDump { Path = file, Source = CoreDumpSource.File, Size = info.Length, Time = info.LastWriteTime };
        try
        {
            using CoreFile core = CoreFile.ReadHeader(file);
            Fill(d, core);
        }
        catch (LeakToolsException ex) when (ex.Kind == FailureKind.InvalidData)
        {
            if (!explicitFile && ex.ErrorId == "NotACore" && !LooksLikeCoreName(file)) return null;
            if (!explicitFile && ex.ErrorId == "NotACore" && info.Length > 0 && CoreFile.DetectCompression(Head(file)) is null && !IsElf(file)) return null;
            d.Problem = ex.Message;
            _warning?.Invoke($"{file}: {ex.Message}");
        }
        catch (IOException ex)
        {
            d.Problem = ex.Message;
            _warning?.Invoke($"{file}: {ex.Message}");
        }
        return d;
    }

    private static bool LooksLikeCoreName(string file)
    {
        string n = Path.GetFileName(file);
        return n == "core" || n.StartsWith("core.", StringComparison.Ordinal);
    }

    private static byte[] Head(string file)
    {
        byte[] b = new byte[8];
        using var fs = File.OpenRead(file);
        int n = fs.Read(b);
        return b[..n];
    }

    private static bool IsElf(string file)
    {
        byte[] h = Head(file);
        return h.Length >= 4 && h[0] == 0x7f && h[1] == 'E' && h[2] == 'L' && h[3] == 'F';
    }

    private void Fill(CoreDump d, CoreFile core)
    {
        d.Compression ??= core.Compression;
        d.Threads = core.Threads.Count;
        if (core.Process is { } p)
        {
            d.Id ??= p.Pid;
            d.Name ??= p.Name;
            d.Uid ??= p.Uid;
            if (string.IsNullOrEmpty(d.CommandLine)) d.CommandLine = p.Arguments;
        }
        d.Signal ??= core.Signal;
        d.Executable ??= core.Executable;
        // comm is cut at 15 characters: prefer the executable's name when it extends it.
        if (d.Name is { Length: >= 15 } && d.Executable is not null && Path.GetFileName(d.Executable).StartsWith(d.Name, StringComparison.Ordinal))
            d.Name = Path.GetFileName(d.Executable);
        if (core.IsSnapshot)
        {
            if (d.Source == CoreDumpSource.File) d.Source = CoreDumpSource.Snapshot;
            if (core.LeakToolsInfo.TryGetValue("freeze_us", out string? us) && long.TryParse(us, out long micros) && micros > 0)
                d.FreezeTime = TimeSpan.FromTicks(micros * 10);
            if (core.LeakToolsInfo.TryGetValue("time", out string? ts) && long.TryParse(ts, out long ms))
                d.Time = DateTimeOffset.FromUnixTimeMilliseconds(ms).LocalDateTime;
        }
        if (core.Problem is not null)
        {
            d.Problem = core.Problem;
            _warning?.Invoke($"{d.Path}: {core.Problem}");
        }
    }

    /// <summary>Adds what the core's own notes say (threads, arguments...), with a warning when unreadable.</summary>
    private void Enrich(CoreDump d)
    {
        try
        {
            using CoreFile core = CoreFile.ReadHeader(d.Path);
            Fill(d, core);
        }
        catch (LeakToolsException ex)
        {
            d.Problem = ex.Message;
            _warning?.Invoke($"{d.Path}: {ex.Message}");
        }
        catch (IOException ex)
        {
            d.Problem = ex.Message;
            _warning?.Invoke($"{d.Path}: {ex.Message}");
        }
    }

    private static string? ReadSmall(string path)
    {
        try
        {
            if (!File.Exists(path)) return null;
            using var fs = File.OpenRead(path);
            byte[] b = new byte[Math.Min(fs.Length, 64 * 1024)];
            int n = fs.Read(b);
            return System.Text.Encoding.UTF8.GetString(b, 0, n).TrimEnd('\n', '\0', ' ');
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { return null; }
    }
}

/// <summary>Signal names and numbers of x86-64 Linux.</summary>
public static class SignalNames
{
    private static readonly string[] s_names =
    {
        "", "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2", "PIPE", "ALRM", "TERM",
        "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
    };

    public static int? Number(string name)
    {
        name = name.StartsWith("SIG", StringComparison.Ordinal) ? name[3..] : name;
        if (name == "IOT") return 6;
        int i = Array.IndexOf(s_names, name);
        return i > 0 ? i : null;
    }

    public static string? Name(int? number) => number is > 0 and < 32 ? "SIG" + s_names[number.Value] : null;
}
