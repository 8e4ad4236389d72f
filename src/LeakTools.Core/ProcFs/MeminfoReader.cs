namespace LeakTools.Core.ProcFs;

/// <summary>Parses /proc/meminfo into <see cref="SystemMemory"/>.</summary>
public static class MeminfoReader
{
    public static SystemMemory Read(ProcRoot? root = null)
    {
        string path = (root ?? ProcRoot.Default).File("meminfo");
        int errno = ProcFile.TryRead(path, out ReadOnlySpan<byte> text);
        if (errno != 0)
            throw new LeakToolsException(FailureKind.NotSupported, "MeminfoUnreadable",
                $"Cannot read {path}: {Interop.Errno.Describe(errno)}. Is /proc mounted?", path);
        return Parse(text);
    }

    public static SystemMemory Parse(ReadOnlySpan<byte> text)
    {
        var items = new List<KeyValuePair<string, long>>(64);
        while (!text.IsEmpty)
        {
            ReadOnlySpan<byte> line = ProcLineParser.NextLine(ref text);
            if (!ProcLineParser.TrySplitKey(line, out ReadOnlySpan<byte> key, out ReadOnlySpan<byte> value)) continue;
            if (!ProcLineParser.TryParseAmount(value, out long amount, out _)) continue;
            items.Add(new KeyValuePair<string, long>(ProcLineParser.Ascii(key), amount));
        }
        var f = new NamedValues(items);
        long Get(string name) => f.TryGetValue(name, out long v) ? v : 0;

        long total = Get("MemTotal");
        long free = Get("MemFree");
        long available = f.TryGetValue("MemAvailable", out long a)
            ? a
            : free + Get("Buffers") + Get("Cached") + Get("SReclaimable"); // kernels before 3.14
        return new SystemMemory
        {
            Total = total,
            Free = free,
            Available = available,
            Used = total - available,
            Buffers = Get("Buffers"),
            Cached = Get("Cached"),
            SwapCached = Get("SwapCached"),
            Active = Get("Active"),
            Inactive = Get("Inactive"),
            SwapTotal = Get("SwapTotal"),
            SwapFree = Get("SwapFree"),
            Dirty = Get("Dirty"),
            Writeback = Get("Writeback"),
            AnonPages = Get("AnonPages"),
            Mapped = Get("Mapped"),
            Shmem = Get("Shmem"),
            Slab = Get("Slab"),
            SReclaimable = Get("SReclaimable"),
            SUnreclaim = Get("SUnreclaim"),
            KernelStack = Get("KernelStack"),
            PageTables = Get("PageTables"),
            CommitLimit = Get("CommitLimit"),
            CommittedAs = Get("Committed_AS"),
            VmallocUsed = Get("VmallocUsed"),
            AnonHugePages = Get("AnonHugePages"),
            HugePagesTotal = Get("HugePages_Total"),
            HugePagesFree = Get("HugePages_Free"),
            HugePagesReserved = Get("HugePages_Rsvd"),
            HugePagesSurplus = Get("HugePages_Surp"),
            HugePageSize = Get("Hugepagesize"),
            Hugetlb = Get("Hugetlb"),
            Fields = f,
            Timestamp = DateTime.Now,
        };
    }
}
