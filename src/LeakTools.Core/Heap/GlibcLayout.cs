namespace LeakTools.Core.Heap;

/// <summary>How e->key marks a chunk sitting in a tcache.</summary>
internal enum TcacheKeyKind
{
    /// <summary>2.28: tcache entries have no key.</summary>
    None,
    /// <summary>2.29-2.33: the key is the owning tcache_perthread_struct's address.</summary>
    StructAddress,
    /// <summary>2.34+: the key is the random tcache_key.</summary>
    Random,
}

/// <summary>The x86-64 layouts of glibc malloc's structures for one release (malloc/malloc.c and
/// malloc/arena.c at tags glibc-2.28 to glibc-2.40). malloc_state is the same in all of them;
/// heap_info and malloc_par grew in 2.35 (huge-page tunables), tcache counts widened in 2.30,
/// e->key came in 2.29 and turned random in 2.34, safe-linking in 2.32.</summary>
internal sealed class GlibcLayout
{
    public const int MinMinor = 28, MaxMinor = 40;

    private GlibcLayout(int minor) => Minor = minor;

    public int Minor { get; }

    public string Version => $"2.{Minor}";

    /// <summary>The layout of glibc 2.<paramref name="minor"/>, or null outside 2.28-2.40.</summary>
    public static GlibcLayout? For(int major, int minor) =>
        major == 2 && minor >= MinMinor && minor <= MaxMinor ? new GlibcLayout(minor) : null;

    // Chunks.
    public const ulong PREV_INUSE = 1, IS_MMAPPED = 2, NON_MAIN_ARENA = 4, SIZE_BITS = 7;
    public const long MinChunkSize = 0x20;
    public const long ChunkHeader = 0x10;

    // struct malloc_state (identical in 2.28-2.40).
    public const int ArenaFlags = 0x4;
    public const int ArenaFastbins = 0x10;
    public const int FastbinCount = 10;
    public const int ArenaTop = 0x60;
    public const int ArenaLastRemainder = 0x68;
    public const int ArenaBins = 0x70;
    public const int BinCount = 127; // bins 1..126 are used
    public const int ArenaNext = 0x870;
    public const int ArenaAttachedThreads = 0x880;
    public const int ArenaSystemMem = 0x888;
    public const int ArenaSize = 0x898;
    public const uint NonContiguousBit = 2;

    /// <summary>The header of bin <paramref name="index"/> (1..126) as a fake chunk: bin_at().</summary>
    public static ulong BinHeader(ulong arena, int index) => arena + ArenaBins + (ulong)(index - 1) * 16 - 0x10;

    // heap_info: ar_ptr, prev, size, mprotect_size (+ pagesize from 2.35), padded.
    public int HeapInfoSize => Minor >= 35 ? 0x30 : 0x20;
    public const int HeapInfoArena = 0, HeapInfoPrev = 8, HeapInfoBytes = 0x10;
    /// <summary>HEAP_MAX_SIZE: 2 * DEFAULT_MMAP_THRESHOLD_MAX on 64-bit.</summary>
    public const ulong DefaultHeapMax = 64UL << 20;

    // struct malloc_par (mp_): 2.35 inserted thp_pagesize, hp_pagesize and hp_flags after arena_max.
    public int MpHugePageSize => Minor >= 35 ? 0x30 : -1;
    public int MpMmapCount => Minor >= 35 ? 0x3c : 0x28;
    public int MpMmappedBytes => Minor >= 35 ? 0x50 : 0x38;
    public int MpSbrkBase => Minor >= 35 ? 0x60 : 0x48;
    public int MpTcacheBins => Minor >= 35 ? 0x68 : 0x50;
    public int MpTcacheCount => Minor >= 35 ? 0x78 : 0x60;
    public int MpSize => Minor >= 35 ? 0x88 : 0x70;

    // tcache_perthread_struct: counts[64] (char until 2.29, uint16_t from 2.30), entries[64].
    public const int TcacheBins = 64;
    public bool WideTcacheCounts => Minor >= 30;
    public int TcacheEntriesOffset => WideTcacheCounts ? 0x80 : 0x40;
    public int TcacheStructSize => TcacheEntriesOffset + TcacheBins * 8;
    /// <summary>request2size(sizeof(tcache_perthread_struct)): the chunk that holds it.</summary>
    public long TcacheChunkSize => (TcacheStructSize + 8 + 15) & ~15L;

    public TcacheKeyKind TcacheKey => Minor >= 34 ? TcacheKeyKind.Random : Minor >= 29 ? TcacheKeyKind.StructAddress : TcacheKeyKind.None;

    /// <summary>Safe-linking of tcache next and fastbin fd pointers (2.32+).</summary>
    public bool SafeLinking => Minor >= 32;

    /// <summary>Undoes PROTECT_PTR: the stored value XOR (the field's address >> 12).</summary>
    public ulong Reveal(ulong fieldAddress, ulong stored) => SafeLinking ? stored ^ (fieldAddress >> 12) : stored;

    /// <summary>The chunk size tcache bin / fastbin <paramref name="index"/> holds.</summary>
    public static long BinChunkSize(int index) => MinChunkSize + index * 16L;

    /// <summary>Usable bytes of an in-use chunk (what malloc_usable_size says).</summary>
    public static long UsableSize(long chunkSize, bool mmapped) => chunkSize - (mmapped ? 16 : 8);
}
