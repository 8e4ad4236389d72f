using LeakTools.Core.Dumps;
using LeakTools.Core.ProcFs;
using LeakTools.Core.Symbols;

namespace LeakTools.Core.Heap;

/// <summary>A core's file mappings (NT_FILE) as the symbolizer takes them: each path as the core
/// names it, opened where it can be read here. -ExecutablePath stands in for the executable. While
/// the core's process still runs (Find-LeakedAllocation -Id), files of another root (a container)
/// are read through /proc/PID/root and deleted ones through /proc/PID/map_files, as
/// <see cref="ProcessSymbolizer.ParseMaps"/> does for a live process.</summary>
internal static class CoreModules
{
    public static List<ModuleMapping> Mappings(CoreFile core, string? executableOverride)
    {
        string? exe = core.Executable;
        int? pid = RunningPid(core);
        string? rootPrefix = pid is int p ? RootPrefix(p) : null;
        var list = new List<ModuleMapping>(core.Files.Count);
        foreach (CoreFileMapping f in core.Files)
        {
            string? open = null;
            if (executableOverride is not null && f.Path == exe) open = executableOverride;
            else if (pid is int live && f.Path.StartsWith('/'))
            {
                if (rootPrefix is not null) open = rootPrefix + f.Path;
                if (f.Path.EndsWith(" (deleted)", StringComparison.Ordinal) || !File.Exists(open ?? f.Path))
                    open = ProcRoot.Default.File(live, $"map_files/{f.Start:x}-{f.End:x}");
            }
            list.Add(new ModuleMapping(f.Start, f.End, f.FileOffset, f.Path, open));
        }
        return list;
    }

    /// <summary>The core's process id when that process still runs here: same pid, and its
    /// executable is the one the core names (so a reused pid is not taken for it).</summary>
    public static int? RunningPid(CoreFile core)
    {
        if (core.Process?.Pid is not int pid || pid <= 0 || core.Executable is not string exe) return null;
        string? link = ProcFields.Link(ProcRoot.Default.File(pid, "exe"));
        if (link is null) return null;
        const string deleted = " (deleted)";
        static string Strip(string s) => s.EndsWith(deleted, StringComparison.Ordinal) ? s[..^deleted.Length] : s;
        // From another mount namespace the link may carry the container root's own prefix.
        return Strip(link).EndsWith(Strip(exe), StringComparison.Ordinal) ? pid : null;
    }

    /// <summary>"/proc/PID/root" when the process sees another root than ours, else null.</summary>
    private static string? RootPrefix(int pid)
    {
        string root = ProcRoot.Default.File(pid, "root");
        try
        {
            string? target = new FileInfo(root).LinkTarget;
            return target is not null && target != "/" ? root : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
