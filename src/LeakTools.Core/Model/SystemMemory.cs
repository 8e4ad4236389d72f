namespace LeakTools;

/// <summary>/proc/meminfo as an object. Sizes in bytes; HugePages* counts are pages.</summary>
public sealed class SystemMemory
{
    public long Total { get; set; }
    public long Free { get; set; }
    /// <summary>MemAvailable; estimated as free does on kernels without it.</summary>
    public long Available { get; set; }
    /// <summary>Total - Available, as procps-ng 4 free computes "used".</summary>
    public long Used { get; set; }
    public long Buffers { get; set; }
    public long Cached { get; set; }
    public long SwapCached { get; set; }
    public long Active { get; set; }
    public long Inactive { get; set; }
    public long SwapTotal { get; set; }
    public long SwapFree { get; set; }
    public long Dirty { get; set; }
    public long Writeback { get; set; }
    public long AnonPages { get; set; }
    public long Mapped { get; set; }
    public long Shmem { get; set; }
    public long Slab { get; set; }
    public long SReclaimable { get; set; }
    public long SUnreclaim { get; set; }
    public long KernelStack { get; set; }
    public long PageTables { get; set; }
    public long CommitLimit { get; set; }
    public long CommittedAs { get; set; }
    public long VmallocUsed { get; set; }
    public long AnonHugePages { get; set; }
    public long HugePagesTotal { get; set; }
    public long HugePagesFree { get; set; }
    public long HugePagesReserved { get; set; }
    public long HugePagesSurplus { get; set; }
    public long HugePageSize { get; set; }
    public long Hugetlb { get; set; }
    /// <summary>Every line of /proc/meminfo by its own name (sizes in bytes, HugePages_* as counts).</summary>
    public NamedValues Fields { get; set; } = new(Array.Empty<KeyValuePair<string, long>>());
    public DateTime Timestamp { get; set; }
}
