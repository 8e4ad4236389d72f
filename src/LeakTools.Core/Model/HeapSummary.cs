namespace LeakTools;

/// <summary>What a row of Get-HeapSummary describes.</summary>
public enum HeapArenaKind
{
    /// <summary>main_arena: the brk heap (and its mmapped runs when brk failed).</summary>
    Main,
    /// <summary>An arena of other threads, made of 64 MiB-aligned heaps.</summary>
    Thread,
    /// <summary>Chunks malloc mmapped one by one (requests over the mmap threshold): no arena owns them.</summary>
    Mmapped,
}

/// <summary>One arena of a glibc heap read from a core (Get-HeapSummary): malloc_info(3) as an
/// object. Chunk counts and bytes are whole chunks, headers included; free chunks are split by
/// the list that holds them. The Mmapped row holds the mmapped chunks.</summary>
public sealed class HeapSummary
{
    public int? ProcessId { get; set; }

    /// <summary>"main", the arena's address, or "mmapped".</summary>
    public string Arena { get; set; } = "";

    public HeapArenaKind Kind { get; set; }

    /// <summary>Heaps of the arena (thread arenas grow by adding 64 MiB-aligned heaps); for the Mmapped row, 0.</summary>
    public int Heaps { get; set; }

    /// <summary>Memory the arena has from the system (system_mem); for the Mmapped row, the mmapped chunks' bytes.</summary>
    public long HeapBytes { get; set; }

    /// <summary>Threads attached to the arena (attached_threads); null for the Mmapped row.</summary>
    public long? Threads { get; set; }

    public long UsedChunks { get; set; }
    public long UsedBytes { get; set; }

    /// <summary>Free chunks on any list (top not included).</summary>
    public long FreeChunks { get; set; }
    public long FreeBytes { get; set; }

    public long TcacheChunks { get; set; }
    public long TcacheBytes { get; set; }
    public long FastbinChunks { get; set; }
    public long FastbinBytes { get; set; }
    public long UnsortedChunks { get; set; }
    public long UnsortedBytes { get; set; }
    public long SmallbinChunks { get; set; }
    public long SmallbinBytes { get; set; }
    public long LargebinChunks { get; set; }
    public long LargebinBytes { get; set; }

    /// <summary>The top chunk (the wilderness at the heap's end).</summary>
    public long TopBytes { get; set; }

    /// <summary>Mmapped chunks (the Mmapped row only) and their bytes.</summary>
    public long? MmappedChunks { get; set; }
    public long? MmappedBytes { get; set; }

    /// <summary>True when every heap of the arena could be walked to its end.</summary>
    public bool Complete { get; set; } = true;

    /// <summary>glibc's release, e.g. "2.36".</summary>
    public string LibcVersion { get; set; } = "";

    /// <summary>The core file read (null when -Id took a snapshot and removed it).</summary>
    public string? Core { get; set; }

    public override string ToString() => $"{Kind} {Arena}";
}
