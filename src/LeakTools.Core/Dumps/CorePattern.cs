using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace LeakTools.Core.Dumps;

/// <summary>Where /proc/sys/kernel/core_pattern sends a core.</summary>
public enum CoreHandler
{
    /// <summary>A file named by the pattern (relative to the process's working directory).</summary>
    File,
    /// <summary>|abrt-hook-ccpp: an abrt problem directory under its spool (/var/spool/abrt).</summary>
    Abrt,
    /// <summary>|systemd-coredump: /var/lib/systemd/coredump/core.COMM.UID.BOOTID.PID.USEC[.zst|.xz|.lz4].</summary>
    SystemdCoredump,
    /// <summary>Another pipe program: LeakTools cannot know where it puts the core.</summary>
    OtherPipe,
}

/// <summary>What the kernel knows when it names a core (format_corename in fs/coredump.c).</summary>
public sealed class CorePatternContext
{
    public int Pid { get; init; }
    public int GlobalPid { get; init; }
    public int Tid { get; init; }
    public uint Uid { get; init; }
    public uint Gid { get; init; }
    public int Signal { get; init; } = 6;
    /// <summary>comm (at most 15 characters).</summary>
    public string Comm { get; init; } = "";
    /// <summary>Full path of the executable (for %E, %f).</summary>
    public string? ExecutablePath { get; init; }
    public string Hostname { get; init; } = "";
    /// <summary>The soft RLIMIT_CORE at dump time (%c); null means unlimited.</summary>
    public ulong? CoreLimit { get; init; }
    /// <summary>The process's working directory (a relative pattern is resolved against it).</summary>
    public string WorkingDirectory { get; init; } = "/";
    /// <summary>/proc/sys/kernel/core_uses_pid.</summary>
    public bool UsesPid { get; init; }
}

/// <summary>Expands core_pattern the way the kernel does.</summary>
public static class CorePattern
{
    public static CoreHandler Classify(string pattern)
    {
        pattern = pattern.Trim();
        if (!pattern.StartsWith('|')) return CoreHandler.File;
        string program = pattern[1..].TrimStart().Split(' ', 2)[0];
        string name = Path.GetFileName(program);
        if (name == "abrt-hook-ccpp") return CoreHandler.Abrt;
        if (name == "systemd-coredump") return CoreHandler.SystemdCoredump;
        return CoreHandler.OtherPipe;
    }

    /// <summary>The program a pipe pattern runs.</summary>
    public static string? PipeProgram(string pattern) =>
        pattern.TrimStart().StartsWith('|') ? pattern.Trim()[1..].TrimStart().Split(' ', 2)[0] : null;

    /// <summary>The absolute path of the core for a file pattern. <paramref name="time"/> fills
    /// %t; with null, %t becomes the regex placeholder when <paramref name="asRegex"/> is set.</summary>
    public static string Expand(string pattern, CorePatternContext c, long? time = null) => Build(pattern.Trim(), c, time, asRegex: false);

    /// <summary>A regex matching the core's absolute path whatever second %t turns out to be.</summary>
    public static Regex ToRegex(string pattern, CorePatternContext c) =>
        new("^" + Build(pattern.Trim(), c, null, asRegex: true) + "$", RegexOptions.CultureInvariant);

    private static string Build(string pattern, CorePatternContext c, long? time, bool asRegex)
    {
        var sb = new StringBuilder();
        void Lit(string s) => sb.Append(asRegex ? Regex.Escape(s) : s);
        bool pidInPattern = false;
        for (int i = 0; i < pattern.Length; i++)
        {
            char ch = pattern[i];
            if (ch != '%' || i + 1 >= pattern.Length)
            {
                Lit(ch.ToString());
                continue;
            }
            char spec = pattern[++i];
            switch (spec)
            {
                case '%': Lit("%"); break;
                case 'p': pidInPattern = true; Lit(N(c.Pid)); break;
                case 'P': Lit(N(c.GlobalPid)); break;
                case 'i': Lit(N(c.Tid)); break;
                case 'I': Lit(N(c.Tid)); break;
                case 'u': Lit(N(c.Uid)); break;
                case 'g': Lit(N(c.Gid)); break;
                case 'd': Lit("1"); break;
                case 's': Lit(N(c.Signal)); break;
                case 't':
                    if (time is not null) Lit(N(time.Value));
                    else if (asRegex) sb.Append("[0-9]+");
                    else Lit("*");
                    break;
                case 'h': Lit(Escape(c.Hostname)); break;
                case 'e': Lit(Escape(c.Comm)); break;
                case 'f': Lit(Escape(Path.GetFileName(c.ExecutablePath ?? c.Comm))); break;
                case 'E': Lit(Escape(c.ExecutablePath ?? "")); break;
                case 'c': Lit(c.CoreLimit is ulong l ? N(l) : "18446744073709551615"); break;
                case 'C': break; // %C: the cgroup id; unknown here and rare
                default: break;  // the kernel drops unknown specifiers
            }
        }
        if (!pidInPattern && c.UsesPid) Lit("." + N(c.Pid));
        string name = sb.ToString();
        if (name.StartsWith('/')) return name;
        string cwd = c.WorkingDirectory.TrimEnd('/');
        return (asRegex ? Regex.Escape(cwd + "/") : cwd + "/") + name;
    }

    private static string N(long v) => v.ToString(CultureInfo.InvariantCulture);
    private static string N(ulong v) => v.ToString(CultureInfo.InvariantCulture);

    /// <summary>The kernel writes '/' in names as '!' (cn_esc_printf).</summary>
    private static string Escape(string s) => s.Replace('/', '!');
}
