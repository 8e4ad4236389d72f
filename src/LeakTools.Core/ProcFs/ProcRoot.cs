namespace LeakTools.Core.ProcFs;

/// <summary>Where procfs is mounted. Tests point it at a folder of sample files laid out as
/// /proc is (<c>tests/samples/proc</c>). <see cref="ForceSmaps"/> makes readers ignore
/// smaps_rollup, as on kernels before 4.14 (RHEL 7); the LEAKTOOLS_NO_SMAPS_ROLLUP=1 environment
/// variable sets it for the default root.</summary>
public sealed class ProcRoot
{
    public ProcRoot(string path = "/proc", bool forceSmaps = false)
    {
        Path = path.TrimEnd('/');
        ForceSmaps = forceSmaps;
    }

    public static ProcRoot Default { get; } =
        new("/proc", Environment.GetEnvironmentVariable("LEAKTOOLS_NO_SMAPS_ROLLUP") is "1" or "true");

    public string Path { get; }

    public bool ForceSmaps { get; }

    public string File(int pid, string name) => $"{Path}/{pid}/{name}";

    public string File(string name) => $"{Path}/{name}";

    /// <summary>Process ids present now, ascending.</summary>
    public List<int> ListProcessIds()
    {
        var pids = new List<int>(256);
        foreach (string dir in Directory.EnumerateDirectories(Path))
        {
            ReadOnlySpan<char> name = System.IO.Path.GetFileName(dir.AsSpan());
            if (name.Length > 0 && (uint)(name[0] - '0') <= 9 && int.TryParse(name, out int pid)) pids.Add(pid);
        }
        pids.Sort();
        return pids;
    }

    public bool ProcessExists(int pid) => Directory.Exists($"{Path}/{pid}");
}
