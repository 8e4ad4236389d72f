namespace LeakTools;

/// <summary>How much memory one process really uses, from smaps_rollup (or smaps summed).
/// Sizes in bytes. Fields an older kernel does not print are null, never 0.</summary>
public sealed class ProcessMemory
{
    public int Id { get; set; }
    public string Name { get; set; } = "";
    public string CommandLine { get; set; } = "";
    public string User { get; set; } = "";
    /// <summary>Proportional set size: private pages plus each shared page divided by its sharers.</summary>
    public long Pss { get; set; }
    public long Rss { get; set; }
    /// <summary>Unique set size: PrivateClean + PrivateDirty, what the process alone holds.</summary>
    public long Uss { get; set; }
    public long PrivateClean { get; set; }
    public long PrivateDirty { get; set; }
    public long SharedClean { get; set; }
    public long SharedDirty { get; set; }
    public long Swap { get; set; }
    public long? SwapPss { get; set; }
    public long Anonymous { get; set; }
    public long? PssDirty { get; set; }
    public long? PssAnon { get; set; }
    public long? PssFile { get; set; }
    public long? PssShmem { get; set; }
    public long Locked { get; set; }
    /// <summary>Which file the figures came from: smaps_rollup, or smaps on kernels without it.</summary>
    public string Source { get; set; } = "";
    public DateTime Timestamp { get; set; }

    public override string ToString() => $"{Name} ({Id}) Pss={Pss}";
}
