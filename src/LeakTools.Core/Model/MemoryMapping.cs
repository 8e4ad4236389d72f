namespace LeakTools;

/// <summary>One mapping of a process with pmap -X's columns and every other smaps field.
/// Sizes in bytes.</summary>
public sealed class MemoryMapping
{
    public int ProcessId { get; set; }
    public ulong Address { get; set; }
    public ulong EndAddress { get; set; }
    public string Perm { get; set; } = "";
    public ulong Offset { get; set; }
    public string Device { get; set; } = "";
    public ulong Inode { get; set; }
    public long Size { get; set; }
    public long Rss { get; set; }
    public long Pss { get; set; }
    public long? PssDirty { get; set; }
    public long Referenced { get; set; }
    public long Anonymous { get; set; }
    public long? LazyFree { get; set; }
    public long Swap { get; set; }
    public long? SwapPss { get; set; }
    public long Locked { get; set; }
    public long SharedClean { get; set; }
    public long SharedDirty { get; set; }
    public long PrivateClean { get; set; }
    public long PrivateDirty { get; set; }
    public long? AnonHugePages { get; set; }
    public long? Ksm { get; set; }
    public long KernelPageSize { get; set; }
    public long MMUPageSize { get; set; }
    public long? ThpEligible { get; set; }
    /// <summary>Path, [heap], [stack], [vdso], "path (deleted)", or empty for anonymous memory.</summary>
    public string Mapping { get; set; } = "";
    public string[] VmFlags { get; set; } = Array.Empty<string>();
    /// <summary>Every numeric field the kernel printed for this mapping, by kernel name.</summary>
    public NamedValues Fields { get; set; } = new(Array.Empty<KeyValuePair<string, long>>());

    public override string ToString() => $"{Address:x}-{EndAddress:x} {Perm} {Mapping}";
}
