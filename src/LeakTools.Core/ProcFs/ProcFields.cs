using System.Globalization;

namespace LeakTools.Core.ProcFs;

/// <summary>Small reads of /proc shared by the dump and tracing code: a task's state letter,
/// fields of a status text, and symlinks such as exe and cwd.</summary>
public static class ProcFields
{
    /// <summary>The state letter of /proc/PID/stat (or task/TID/stat), or null when the process is gone.</summary>
    public static char? State(ProcRoot root, int pid, int? tid = null)
    {
        string? stat = ProcFile.TryReadText(root.File(pid, tid is null ? "stat" : $"task/{tid}/stat"), out _);
        if (stat is null) return null;
        int close = stat.LastIndexOf(')');
        return close > 0 && close + 2 < stat.Length ? stat[close + 2] : null;
    }

    /// <summary>The process exists and has not exited (not a zombie).</summary>
    public static bool IsAlive(ProcRoot root, int pid) => State(root, pid) is char c && c is not ('Z' or 'X');

    /// <summary>A hexadecimal status field (SigPnd, SigBlk, SigCgt, CapEff...), 0 when absent.</summary>
    public static ulong StatusHex(string status, string key) =>
        ulong.TryParse(StatusValue(status, key)?.Split('\t', ' ')[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong v) ? v : 0;

    /// <summary>The first number of a status field (Uid, Gid: the real id), 0 when absent.</summary>
    public static uint StatusFirst(string status, string key) =>
        uint.TryParse(StatusValue(status, key)?.Split('\t', ' ')[0], NumberStyles.None, CultureInfo.InvariantCulture, out uint v) ? v : 0;

    private static string? StatusValue(string status, string key)
    {
        foreach (string line in status.Split('\n'))
        {
            if (line.Length > key.Length && line.StartsWith(key, StringComparison.Ordinal) && line[key.Length] == ':')
                return line[(key.Length + 1)..].Trim();
        }
        return null;
    }

    /// <summary>The target of a symlink (/proc/PID/exe, cwd), or null when unreadable.</summary>
    public static string? Link(string path)
    {
        try { return new FileInfo(path).LinkTarget; }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { return null; }
    }
}
