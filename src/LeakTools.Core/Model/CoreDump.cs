namespace LeakTools;

/// <summary>Where a core dump came from.</summary>
public enum CoreDumpSource
{
    /// <summary>A plain core file the kernel (or gcore) wrote.</summary>
    File,
    /// <summary>A live snapshot written by Invoke-CoreCapture -Method Snapshot.</summary>
    Snapshot,
    /// <summary>An abrt problem directory (abrt-hook-ccpp).</summary>
    Abrt,
    /// <summary>A file in systemd-coredump's directory.</summary>
    SystemdCoredump,
}

/// <summary>One core dump: where it is, whose it is and how it was made. Fields a source does not
/// record are null.</summary>
public sealed class CoreDump
{
    /// <summary>The core file (for abrt, the problem directory's coredump file).</summary>
    public string Path { get; set; } = "";
    /// <summary>Process id of the dumped process.</summary>
    public int? Id { get; set; }
    /// <summary>Process name (comm, or the executable's base name).</summary>
    public string? Name { get; set; }
    public string? Executable { get; set; }
    public string? CommandLine { get; set; }
    public uint? Uid { get; set; }
    /// <summary>The signal that ended the process (null for a live snapshot).</summary>
    public int? Signal { get; set; }
    /// <summary>When the dump was taken.</summary>
    public DateTime? Time { get; set; }
    /// <summary>Bytes on disk (compressed size for .zst/.xz/.lz4).</summary>
    public long Size { get; set; }
    public CoreDumpSource Source { get; set; }
    /// <summary>zstd, xz, lz4, or null for an uncompressed core.</summary>
    public string? Compression { get; set; }
    /// <summary>Threads recorded (NT_PRSTATUS notes), when the core was read.</summary>
    public int? Threads { get; set; }
    /// <summary>How long the process was stopped while it was captured (snapshots only).</summary>
    public TimeSpan? FreezeTime { get; set; }
    /// <summary>abrt's package field (the RPM that owns the executable).</summary>
    public string? Package { get; set; }
    /// <summary>abrt's reason line ("amsHelper killed by SIGABRT").</summary>
    public string? Reason { get; set; }
    /// <summary>The abrt problem directory.</summary>
    public string? Directory { get; set; }
    /// <summary>What could not be read (truncated or corrupt core), else null.</summary>
    public string? Problem { get; set; }

    public override string ToString() => Path;
}
