namespace LeakTools.Core.ProcFs;

/// <summary>Who a process is: the names it can be found by, its command line and its owner.</summary>
public sealed class ProcessIdentity
{
    public int Id { get; init; }
    /// <summary>The display name: comm, or the executable's full name when comm was cut at 15 characters.</summary>
    public string Name { get; init; } = "";
    /// <summary>/proc/PID/comm as the kernel keeps it (at most 15 characters).</summary>
    public string Comm { get; init; } = "";
    /// <summary>Base name of argv[0] when it is a plain program path, else null.</summary>
    public string? ExecutableName { get; init; }
    /// <summary>Arguments joined with spaces, as ps prints them; empty for kernel threads and zombies.</summary>
    public string CommandLine { get; init; } = "";
    public uint Uid { get; init; }
    public ProcessStatus Status { get; init; } = null!;

    public string User => UserNames.Lookup(Uid);

    /// <summary>The names a -Name pattern is matched against: Name, comm and argv[0]'s base name.</summary>
    public IEnumerable<string> MatchNames
    {
        get
        {
            yield return Name;
            if (Comm != Name) yield return Comm;
            if (ExecutableName is not null && ExecutableName != Name && ExecutableName != Comm) yield return ExecutableName;
        }
    }

    /// <summary>Builds the identity from status and cmdline contents.</summary>
    public static ProcessIdentity Create(int pid, ProcessStatus status, ReadOnlySpan<byte> cmdline)
    {
        string commandLine = JoinCommandLine(cmdline, out string? argv0);
        string? exeName = ExecutableBaseName(argv0);
        string name = status.Comm;
        // comm is cut at TASK_COMM_LEN-1 = 15 characters: prefer the program's full name when it extends comm.
        if (name.Length >= 15 && exeName is not null && exeName.Length > name.Length && exeName.StartsWith(name, StringComparison.Ordinal))
            name = exeName;
        return new ProcessIdentity
        {
            Id = pid,
            Name = name,
            Comm = status.Comm,
            ExecutableName = exeName,
            CommandLine = commandLine,
            Uid = status.EffectiveUid,
            Status = status,
        };
    }

    private static string JoinCommandLine(ReadOnlySpan<byte> cmdline, out string? argv0)
    {
        argv0 = null;
        while (!cmdline.IsEmpty && cmdline[^1] == 0) cmdline = cmdline[..^1];
        if (cmdline.IsEmpty) return "";
        int firstNul = cmdline.IndexOf((byte)0);
        argv0 = ProcLineParser.Ascii(firstNul < 0 ? cmdline : cmdline[..firstNul]);
        // A process that rewrote its argv (setproctitle) may use spaces instead of NULs: keep it as is.
        string joined = ProcLineParser.Ascii(cmdline).Replace('\0', ' ');
        return joined;
    }

    private static string? ExecutableBaseName(string? argv0)
    {
        if (string.IsNullOrEmpty(argv0) || argv0.Contains(' ') || argv0.Contains(':')) return null;
        int slash = argv0.LastIndexOf('/');
        string name = slash < 0 ? argv0 : argv0[(slash + 1)..];
        if (name.StartsWith('-')) name = name[1..]; // login shells: "-bash"
        return name.Length == 0 ? null : name;
    }
}
