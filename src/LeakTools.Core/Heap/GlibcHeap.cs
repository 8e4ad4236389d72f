using LeakTools.Core.Dumps;

namespace LeakTools.Core.Heap;

/// <summary>One arena as read from the core.</summary>
internal sealed class ArenaState
{
    public int Index { get; init; }
    public ulong Address { get; init; }
    public bool IsMain { get; init; }
    public ulong Top { get; set; }
    public long TopSize { get; set; }
    public long SystemMem { get; set; }
    public long AttachedThreads { get; set; }
    public uint Flags { get; set; }
    public int Heaps { get; set; }
    /// <summary>True when every heap of the arena was walked to its end (top or fencepost).</summary>
    public bool Complete { get; set; } = true;
    /// <summary>Bytes of the chunk walks (every chunk, top included); for a contiguous main arena, system_mem.</summary>
    public long WalkedBytes { get; set; }
}

/// <summary>An mmapped chunk found by its header: the chunk at <paramref name="Address"/> of
/// <paramref name="Size"/> bytes; <paramref name="PrevSize"/> bytes of the mapping lie before it
/// (memalign's leading slack; 0 for plain malloc). The mapping is [Address - PrevSize, Address + Size).</summary>
internal readonly record struct MmappedChunk(ulong Address, long Size, long PrevSize)
{
    public ulong MappingStart => Address - (ulong)PrevSize;
    public long MappingBytes => Size + PrevSize;
}

/// <summary>Reads glibc's heap from a core: the arenas (main_arena by symbol or by scanning, the
/// others through its next ring and their 64 MiB-aligned heap_info), every chunk by a header walk
/// with PREV_INUSE, then every free list — each thread's tcache (found through the thread's TLS,
/// and by content), fastbins and the unsorted/small/large bins, safe-linking undone from 2.32 —
/// and the mmapped chunks by their page-aligned headers, checked against mp_.n_mmaps. Memory it
/// could not explain is left out of <see cref="Claimed"/>, so the reachability scan treats it as
/// roots: an unreadable stretch can hide a leak but never invent one.</summary>
internal sealed class GlibcHeap
{
    private readonly CoreMemory _memory;
    private readonly GlibcModule _libc;
    private readonly GlibcLayout _layout;
    private readonly List<string> _warnings;
    private readonly List<(ulong Lo, ulong Hi)> _claimed = new();
    private readonly HashSet<ulong> _tcacheStructs = new();

    private GlibcHeap(CoreMemory memory, GlibcModule libc, List<string> warnings)
    {
        _memory = memory;
        _libc = libc;
        _layout = libc.Layout;
        _warnings = warnings;
    }

    public List<ArenaState> Arenas { get; } = new();

    public ChunkTable Chunks { get; } = new();

    public List<MmappedChunk> Mmapped { get; } = new();

    /// <summary>mp_.n_mmaps and mp_.mmapped_mem, when mp_ is known.</summary>
    public int? ExpectedMmapCount { get; private set; }
    public long? ExpectedMmapBytes { get; private set; }

    /// <summary>Memory the heap accounts for (heap headers, walked chunks, top, mmapped chunks),
    /// merged and in address order. Everything else present in the core is a root.</summary>
    public IReadOnlyList<(ulong Lo, ulong Hi)> Claimed => _claimed;

    public static GlibcHeap Read(CoreMemory memory, GlibcModule libc, List<string> warnings, CancellationToken cancel)
    {
        var heap = new GlibcHeap(memory, libc, warnings);
        heap.ReadArenas(cancel);
        heap.Chunks.Sort();
        heap.ReadFreeLists();
        heap.MergeClaimed();
        heap.FindMmapped(cancel);
        heap.MergeClaimed();
        return heap;
    }

    private ulong U64(ulong address) => _memory.TryU64(address, out ulong v) ? v : 0;

    private LeakToolsException NotInCore(string what)
    {
        CoreFile core = _memory.Core;
        string why = core.Truncated ? $"the core is {core.Problem}"
            : core.LeakToolsInfo.TryGetValue("coredump_filter", out string? filter) ? $"the process's coredump_filter ({filter}) kept anonymous memory out of it"
            : "it was written without anonymous memory (coredump_filter 0x33 or more keeps it)";
        return new LeakToolsException(FailureKind.InvalidData, "HeapNotInCore", $"The core does not hold {what}: {why}, so the heap cannot be read.", core.Path);
    }

    // ---------------------------------------------------------------- arenas and chunk walks

    private void ReadArenas(CancellationToken cancel)
    {
        ulong main = _libc.MainArena ?? FindMainArena();
        if (!_memory.IsPresent(main, GlibcLayout.ArenaSize)) throw NotInCore("libc's data (main_arena)");
        ulong sbrkBase = 0;
        ulong heapMax = GlibcLayout.DefaultHeapMax;
        if (_libc.MallocParameters is ulong mp)
        {
            if (!_memory.IsPresent(mp, _layout.MpSize)) throw NotInCore("libc's data (mp_)");
            _memory.TryU32(mp + (ulong)_layout.MpMmapCount, out uint count);
            ExpectedMmapCount = (int)count;
            ExpectedMmapBytes = (long)U64(mp + (ulong)_layout.MpMmappedBytes);
            sbrkBase = U64(mp + (ulong)_layout.MpSbrkBase);
            if (_layout.MpHugePageSize >= 0 && U64(mp + (ulong)_layout.MpHugePageSize) is ulong hp and > 0) heapMax = hp * 4;
        }

        ulong a = main;
        var seen = new HashSet<ulong>();
        do
        {
            cancel.ThrowIfCancellationRequested();
            if (!seen.Add(a))
            {
                _warnings.Add($"The arena list loops at 0x{a:x} without returning to main_arena: arenas after it were not read, and their memory counts as roots.");
                break;
            }
            if (!_memory.IsPresent(a, GlibcLayout.ArenaSize)) throw NotInCore($"the arena at 0x{a:x}");
            var arena = new ArenaState
            {
                Index = Arenas.Count,
                Address = a,
                IsMain = a == main,
                Top = U64(a + GlibcLayout.ArenaTop),
                SystemMem = (long)U64(a + GlibcLayout.ArenaSystemMem),
                AttachedThreads = (long)U64(a + GlibcLayout.ArenaAttachedThreads),
            };
            _memory.TryU32(a + GlibcLayout.ArenaFlags, out uint flags);
            arena.Flags = flags;
            Arenas.Add(arena);
            // main_arena's top, bins and fastbins point at chunk headers, and a chunk's header
            // (its prev_size word) is the last 8 usable bytes of the block before it: as a root,
            // main_arena would keep alive a leaked block just below top or a binned chunk. The other
            // arenas' malloc_state lies in their first heap's header, claimed with it.
            if (arena.IsMain) _claimed.Add((a, a + GlibcLayout.ArenaSize));
            if (arena.IsMain) WalkMainArena(arena, sbrkBase);
            else WalkThreadArena(arena, heapMax);
            a = U64(a + GlibcLayout.ArenaNext);
        }
        while (a != main && a != 0 && Arenas.Count < 65536);
    }

    private long TopSizeOf(ulong top) => (long)(U64(top + 8) & ~GlibcLayout.SIZE_BITS);

    private void WalkMainArena(ArenaState arena, ulong sbrkBase)
    {
        if (arena.SystemMem == 0 || arena.Top == 0) return; // main arena never used (everything mmapped)
        if (!_memory.IsPresent(arena.Top, 16)) throw NotInCore($"the main heap (top chunk at 0x{arena.Top:x})");
        arena.TopSize = TopSizeOf(arena.Top);
        ulong topEnd = arena.Top + (ulong)arena.TopSize;
        arena.Heaps = 1;
        var starts = new List<ulong>();
        if (sbrkBase != 0) starts.Add(sbrkBase);
        else starts.AddRange(MainHeapStartCandidates(arena.Top));
        ulong keptEnd = 0;
        foreach (ulong start in starts)
        {
            if (start > arena.Top) continue;
            var trial = new ChunkTable();
            WalkResult r = Walk(arena, start, topEnd, arena.Top, trial);
            if (r == WalkResult.ReachedTop)
            {
                Keep(trial, arena, start, r);
                _claimed.Add((arena.Top, topEnd));
                if (sbrkBase != 0 && arena.WalkedBytes != arena.SystemMem)
                    _warnings.Add($"The main heap's chunks add up to {arena.WalkedBytes:N0} bytes, but main_arena.system_mem says {arena.SystemMem:N0}: the heap may have been changing while the core was taken.");
                return;
            }
            if (sbrkBase != 0)
            {
                keptEnd = Keep(trial, arena, start, r); // what was walked before the break or fencepost
                break;
            }
        }
        // A non-contiguous main arena (brk failed, then mmap; or a foreign sbrk): the run holding
        // top starts its segment.
        if (_memory.SegmentAt(arena.Top) is CoreSegment seg && seg.VirtualAddress >= keptEnd)
        {
            var trial = new ChunkTable();
            ulong start = (seg.VirtualAddress + 15) & ~15UL;
            if (Walk(arena, start, topEnd, arena.Top, trial) == WalkResult.ReachedTop)
            {
                Keep(trial, arena, start, WalkResult.ReachedTop);
                _claimed.Add((arena.Top, topEnd));
                if (keptEnd != 0)
                {
                    arena.Heaps++;
                    _warnings.Add("The main arena is non-contiguous (brk failed or another sbrk user moved it): the runs between its first and the one holding top could not be walked and count as roots.");
                }
                return;
            }
        }
        arena.Complete = false;
        _warnings.Add($"The main heap could not be walked up to its top chunk at 0x{arena.Top:x}: the part not walked counts as roots, so leaks in it are not reported.");
    }

    /// <summary>Without mp_.sbrk_base: the main heap starts its segment, or (brk merged with the
    /// executable's bss) the first page after the executable's last file mapping in it.</summary>
    private IEnumerable<ulong> MainHeapStartCandidates(ulong top)
    {
        CoreSegment? seg = _memory.SegmentAt(top);
        if (seg is null) yield break;
        yield return seg.VirtualAddress;
        foreach (CoreFileMapping f in _memory.Core.Files)
        {
            if (f.End > seg.VirtualAddress && f.End < top) yield return (f.End + 0xfff) & ~0xfffUL;
        }
        for (ulong p = seg.VirtualAddress + 0x1000; p < top && p < seg.VirtualAddress + 0x40000; p += 0x1000) yield return p;
    }

    /// <summary>Adds a walk's chunks and claims the memory it covered; returns where that ends.</summary>
    private ulong Keep(ChunkTable trial, ArenaState arena, ulong start, WalkResult r)
    {
        ulong end = start;
        for (int i = 0; i < trial.Count; i++)
        {
            Chunks.Add(trial.Address(i), trial.Size(i), trial.Kind(i), arena.Index);
            end = trial.Address(i) + (ulong)trial.Size(i);
            arena.WalkedBytes += trial.Size(i);
        }
        if (r == WalkResult.ReachedTop) arena.WalkedBytes += arena.TopSize;
        if (r == WalkResult.Fencepost) end += 32; // the two fencepost headers belong to the heap, too
        if (end > start) _claimed.Add((start, end));
        return end;
    }

    private void WalkThreadArena(ArenaState arena, ulong heapMax)
    {
        ulong heap = FindHeapInfo(arena, heapMax);
        if (heap == 0)
        {
            arena.Complete = false;
            _warnings.Add($"Cannot find the heap of arena 0x{arena.Address:x} (top 0x{arena.Top:x}): its memory counts as roots.");
            return;
        }
        arena.TopSize = TopSizeOf(arena.Top);
        var heaps = new List<ulong>();
        for (ulong h = heap; h != 0 && heaps.Count < 100000; h = U64(h + GlibcLayout.HeapInfoPrev))
        {
            if (!_memory.IsPresent(h, _layout.HeapInfoSize)) throw NotInCore($"the heap at 0x{h:x} of arena 0x{arena.Address:x}");
            if (U64(h + GlibcLayout.HeapInfoArena) != arena.Address)
            {
                arena.Complete = false;
                _warnings.Add($"The heap list of arena 0x{arena.Address:x} breaks at 0x{h:x}: earlier heaps count as roots.");
                break;
            }
            heaps.Add(h);
        }
        arena.Heaps = heaps.Count;
        foreach (ulong h in heaps)
        {
            ulong size = U64(h + GlibcLayout.HeapInfoBytes);
            bool first = arena.Address == h + (ulong)_layout.HeapInfoSize;
            ulong start = first ? AlignChunk(arena.Address + GlibcLayout.ArenaSize) : h + (ulong)_layout.HeapInfoSize;
            bool hasTop = h == heap;
            ulong end = hasTop ? arena.Top + (ulong)arena.TopSize : h + size;
            _claimed.Add((h, start));
            var trial = new ChunkTable();
            WalkResult r = Walk(arena, start, end, hasTop ? arena.Top : 0, trial);
            Keep(trial, arena, start, r);
            if (r == WalkResult.ReachedTop) _claimed.Add((arena.Top, end));
            bool complete = hasTop ? r == WalkResult.ReachedTop : r is WalkResult.Fencepost or WalkResult.End;
            if (!complete)
            {
                arena.Complete = false;
                _warnings.Add($"The heap at 0x{h:x} of arena 0x{arena.Address:x} could not be walked to its end: the rest counts as roots.");
            }
        }
    }

    /// <summary>The first chunk of an arena's first heap: after malloc_state, aligned so that chunk2mem is.</summary>
    private static ulong AlignChunk(ulong p)
    {
        ulong misalign = (p + 16) & 15;
        return misalign == 0 ? p : p + 16 - misalign;
    }

    private ulong FindHeapInfo(ArenaState arena, ulong heapMax)
    {
        foreach (ulong max in new[] { heapMax, GlibcLayout.DefaultHeapMax }.Distinct())
        {
            ulong h = arena.Top & ~(max - 1);
            if (U64(h + GlibcLayout.HeapInfoArena) == arena.Address) return h;
        }
        return 0;
    }

    private enum WalkResult { ReachedTop, Fencepost, End, Broken }

    /// <summary>Walks chunk headers from <paramref name="start"/>; each chunk is in use when the next
    /// one's PREV_INUSE is set. Stops at <paramref name="top"/>, a fencepost, or <paramref name="end"/>.</summary>
    private unsafe WalkResult Walk(ArenaState arena, ulong start, ulong end, ulong top, ChunkTable into)
    {
        ulong p = start;
        while (true)
        {
            if (p == top) return WalkResult.ReachedTop;
            if (p == end) { MarkLastUncertain(into); return WalkResult.End; }
            if (p + 16 > end || !_memory.TryU64(p + 8, out ulong sizeWord)) break;
            long size = (long)(sizeWord & ~GlibcLayout.SIZE_BITS);
            if (size == 16) return WalkResult.Fencepost;
            if (size < GlibcLayout.MinChunkSize || (size & 15) != 0 || p + (ulong)size > end) break;
            ulong next = p + (ulong)size;
            ChunkKind kind;
            if (next == end && next != top) kind = ChunkKind.Uncertain; // the end of a heap without fenceposts
            else if (_memory.TryU64(next + 8, out ulong nextSize)) kind = (nextSize & GlibcLayout.PREV_INUSE) != 0 ? ChunkKind.Used : ChunkKind.Unlisted;
            else break;
            into.Add(p, size, kind, arena.Index);
            p = next;
        }
        MarkLastUncertain(into);
        return WalkResult.Broken;
    }

    private static void MarkLastUncertain(ChunkTable t)
    {
        if (t.Count > 0 && t.Kind(t.Count - 1) == ChunkKind.Used) t.SetKind(t.Count - 1, ChunkKind.Uncertain);
    }

    /// <summary>Without symbols: main_arena in libc's writable data, recognised as chap does by its
    /// bins (empty ones point at themselves) and a next ring that closes on it.</summary>
    private ulong FindMainArena()
    {
        var candidates = new List<ulong>();
        foreach (CoreFileMapping f in _memory.Core.Files.Where(f => f.Path == _libc.Path))
        {
            foreach (CoreSegment s in _memory.Segments)
            {
                if (!s.Writable || s.VirtualAddress < f.Start || s.VirtualAddress >= f.End) continue;
                candidates.Add(s.VirtualAddress);
                // libc's bss is the anonymous segment right after its last file page.
                if (_memory.SegmentAt(s.End) is CoreSegment bss && bss.Writable) candidates.Add(bss.VirtualAddress);
            }
        }
        foreach (ulong segStart in candidates.Distinct())
        {
            CoreSegment seg = _memory.SegmentAt(segStart)!;
            for (ulong c = seg.VirtualAddress; c + GlibcLayout.ArenaSize <= seg.End; c += 8)
            {
                // Bin 126 (the largest sizes) is nearly always empty: a cheap first test.
                ulong last = GlibcLayout.BinHeader(c, 126);
                if (U64(last + 16) != last || U64(last + 24) != last) continue;
                int empty = 0;
                for (int i = 1; i <= 126; i++)
                {
                    ulong h = GlibcLayout.BinHeader(c, i);
                    if (U64(h + 16) == h && U64(h + 24) == h) empty++;
                }
                if (empty < 60) continue;
                ulong top = U64(c + GlibcLayout.ArenaTop);
                if (top != 0 && !_memory.IsPresent(top, 16)) continue;
                ulong a = c;
                int hops = 0;
                do { a = U64(a + GlibcLayout.ArenaNext); } while (a != c && a != 0 && ++hops < 4096);
                if (a == c) return c;
            }
        }
        throw new LeakToolsException(FailureKind.InvalidData, "ArenaNotFound",
            $"Cannot find main_arena: libc's debug symbols are not installed (libc6-dbg, glibc-debuginfo, or DEBUGINFOD_URLS) and scanning libc's data found no arena.", _memory.Core.Path);
    }

    // ---------------------------------------------------------------- free lists

    private void ReadFreeLists()
    {
        foreach (ArenaState arena in Arenas)
        {
            ReadFastbins(arena);
            ReadBins(arena);
        }
        ReadTcaches();
    }

    private void ReadFastbins(ArenaState arena)
    {
        for (int i = 0; i < GlibcLayout.FastbinCount; i++)
        {
            ulong p = U64(arena.Address + GlibcLayout.ArenaFastbins + (ulong)i * 8);
            int steps = 0;
            while (p != 0 && steps++ <= Chunks.Count)
            {
                int c = Chunks.Find(p);
                if (c < 0)
                {
                    _warnings.Add($"Fastbin {i} of arena 0x{arena.Address:x} leads to 0x{p:x}, which is not a chunk: the rest of that list was not read.");
                    break;
                }
                if (Chunks.Kind(c) is ChunkKind.Used or ChunkKind.Unlisted) Chunks.SetKind(c, ChunkKind.Fastbin);
                ulong fd = p + 16;
                p = _layout.Reveal(fd, U64(fd));
            }
        }
    }

    private void ReadBins(ArenaState arena)
    {
        for (int i = 1; i < GlibcLayout.BinCount; i++)
        {
            ulong header = GlibcLayout.BinHeader(arena.Address, i);
            ulong p = U64(header + 16);
            ChunkKind kind = i == 1 ? ChunkKind.Unsorted : i < 64 ? ChunkKind.Smallbin : ChunkKind.Largebin;
            int steps = 0;
            while (p != header && p != 0 && steps++ <= Chunks.Count)
            {
                int c = Chunks.Find(p);
                if (c < 0)
                {
                    _warnings.Add($"Bin {i} of arena 0x{arena.Address:x} leads to 0x{p:x}, which is not a chunk: the rest of that list was not read.");
                    break;
                }
                ChunkKind now = Chunks.Kind(c);
                if (now == ChunkKind.Unlisted) Chunks.SetKind(c, kind);
                else if (now == ChunkKind.Used)
                {
                    Chunks.SetKind(c, ChunkKind.Uncertain);
                    _warnings.Add($"Chunk 0x{p:x} is in bin {i} of arena 0x{arena.Address:x} but in use by its header: left out of the leak report.");
                }
                p = U64(p + 16);
            }
        }
    }

    /// <summary>Each thread's tcache: through the TLS variable (the GOT slot libc's symbols name, or
    /// every initial-exec TLS slot of libc without them), and by content — any chunk of the
    /// tcache_perthread_struct's size whose counts match its lists — so a thread whose TLS the core
    /// lacks still has its cached chunks counted as free.</summary>
    private void ReadTcaches()
    {
        var structs = new List<ulong>();
        foreach (CoreThread t in _memory.Core.Threads)
        {
            ulong tp = t.Registers.FsBase;
            if (tp == 0) continue;
            if (_libc.TcacheThreadOffset is long off)
            {
                ulong ptr = U64(tp + (ulong)off);
                if (ptr == 0) continue; // no tcache yet, or disabled, or shut down
                if (IsTcacheChunk(ptr)) structs.Add(ptr);
                else _warnings.Add($"Thread {t.Tid}'s tcache pointer 0x{ptr:x} is not a tcache chunk.");
            }
            else
            {
                foreach (long candidate in _libc.ThreadOffsets)
                {
                    ulong ptr = U64(tp + (ulong)candidate);
                    if (ptr != 0 && IsTcacheChunk(ptr) && ValidTcache(ptr, strict: true)) structs.Add(ptr);
                }
            }
        }
        for (int i = 0; i < Chunks.Count; i++)
        {
            if (!IsTcacheSize(Chunks.Size(i)) || Chunks.Kind(i) != ChunkKind.Used) continue;
            ulong user = Chunks.Address(i) + 16;
            if (!structs.Contains(user) && ValidTcache(user, strict: true)) structs.Add(user);
        }
        var keys = new Dictionary<ulong, int>();
        foreach (ulong s in structs.Distinct())
        {
            _tcacheStructs.Add(s);
            MarkTcache(s, keys);
        }
        MarkKeyedChunks(keys);
    }

    private bool IsTcacheChunk(ulong user)
    {
        int c = Chunks.Find(user - 16);
        return c >= 0 && IsTcacheSize(Chunks.Size(c));
    }

    /// <summary>_int_malloc may hand tcache_init a chunk up to MINSIZE-16 larger than asked (a free
    /// chunk whose remainder would be too small to split off).</summary>
    private bool IsTcacheSize(long size) => size >= _layout.TcacheChunkSize && size < _layout.TcacheChunkSize + GlibcLayout.MinChunkSize;

    private int Count(ulong tcache, int bin)
    {
        if (_layout.WideTcacheCounts) return _memory.TryRead(tcache + (ulong)bin * 2, out ushort wide) ? wide : -1;
        return _memory.TryRead(tcache + (ulong)bin, out byte narrow) ? narrow : -1;
    }

    private ulong Entry(ulong tcache, int bin) => U64(tcache + (ulong)_layout.TcacheEntriesOffset + (ulong)bin * 8);

    /// <summary>True when the struct at <paramref name="tcache"/> holds at least one entry and every
    /// list is exactly as long as its count, through chunks of that bin's size.</summary>
    private bool ValidTcache(ulong tcache, bool strict)
    {
        int entries = 0;
        for (int bin = 0; bin < GlibcLayout.TcacheBins; bin++)
        {
            int count = Count(tcache, bin);
            ulong e = Entry(tcache, bin);
            if (count < 0) return false;
            int n = 0;
            while (e != 0 && n <= count)
            {
                int c = Chunks.Find(e - 16);
                if (c < 0 || Chunks.Size(c) != GlibcLayout.BinChunkSize(bin)) return false;
                n++;
                e = _layout.Reveal(e, U64(e));
            }
            if (n != count && strict) return false;
            entries += n;
        }
        return entries > 0;
    }

    private void MarkTcache(ulong tcache, Dictionary<ulong, int> keys)
    {
        for (int bin = 0; bin < GlibcLayout.TcacheBins; bin++)
        {
            int count = Count(tcache, bin);
            ulong e = Entry(tcache, bin);
            int n = 0;
            while (e != 0 && n < 65536)
            {
                int c = Chunks.Find(e - 16);
                if (c < 0)
                {
                    _warnings.Add($"tcache 0x{tcache:x} bin {bin} leads to 0x{e:x}, which is not a chunk: the rest of that list was not read.");
                    break;
                }
                if (Chunks.Kind(c) is ChunkKind.Used or ChunkKind.Unlisted or ChunkKind.Uncertain) Chunks.SetKind(c, ChunkKind.Tcache);
                if (_layout.TcacheKey == TcacheKeyKind.Random)
                {
                    ulong key = U64(e + 8);
                    keys[key] = keys.GetValueOrDefault(key) + 1;
                }
                n++;
                e = _layout.Reveal(e, U64(e));
            }
            if (count >= 0 && n != count)
                _warnings.Add($"tcache 0x{tcache:x} bin {bin} counts {count} chunks but its list holds {n}.");
        }
    }

    /// <summary>A chunk in use by its header whose e->key word says "in a tcache" (the random
    /// tcache_key from 2.34, a tcache struct's address in 2.29-2.33) but that no list read holds:
    /// left out of the report, its words kept as roots. glibc zeroes the key when it hands a chunk
    /// out, so in a consistent core there are none.</summary>
    private void MarkKeyedChunks(Dictionary<ulong, int> keysSeen)
    {
        if (_layout.TcacheKey == TcacheKeyKind.None) return;
        ulong? randomKey = null;
        if (_layout.TcacheKey == TcacheKeyKind.Random)
        {
            if (_libc.TcacheKeyAddress is ulong at && _memory.TryU64(at, out ulong k) && k != 0) randomKey = k;
            else if (keysSeen.Count > 0) randomKey = keysSeen.MaxBy(kv => kv.Value).Key;
            if (randomKey is null) return;
        }
        int marked = 0;
        for (int i = 0; i < Chunks.Count; i++)
        {
            if (Chunks.Kind(i) != ChunkKind.Used) continue;
            ulong key = U64(Chunks.Address(i) + 24);
            if (randomKey is ulong r ? key == r : key != 0 && _tcacheStructs.Contains(key))
            {
                Chunks.SetKind(i, ChunkKind.Uncertain);
                marked++;
            }
        }
        if (marked > 0)
        {
            _warnings.Add($"{marked} chunk(s) carry a tcache key but are on no tcache list that was read: left out of the leak report.");
        }
    }

    // ---------------------------------------------------------------- mmapped chunks

    private void MergeClaimed()
    {
        _claimed.Sort();
        var merged = new List<(ulong Lo, ulong Hi)>();
        foreach (var r in _claimed)
        {
            if (r.Hi <= r.Lo) continue;
            if (merged.Count > 0 && r.Lo <= merged[^1].Hi) merged[^1] = (merged[^1].Lo, Math.Max(merged[^1].Hi, r.Hi));
            else merged.Add(r);
        }
        _claimed.Clear();
        _claimed.AddRange(merged);
    }

    /// <summary>Ranges of [lo, hi) not claimed by the heap, in order.</summary>
    internal static IEnumerable<(ulong Lo, ulong Hi)> Unclaimed(IReadOnlyList<(ulong Lo, ulong Hi)> claimed, ulong lo, ulong hi)
    {
        int i = FirstEndingAfter(claimed, lo);
        ulong p = lo;
        for (; i < claimed.Count && claimed[i].Lo < hi; i++)
        {
            if (claimed[i].Lo > p) yield return (p, claimed[i].Lo);
            p = Math.Max(p, claimed[i].Hi);
        }
        if (p < hi) yield return (p, hi);
    }

    private static int FirstEndingAfter(IReadOnlyList<(ulong Lo, ulong Hi)> ranges, ulong address)
    {
        int lo = 0, hi = ranges.Count;
        while (lo < hi)
        {
            int mid = (lo + hi) >>> 1;
            if (ranges[mid].Hi <= address) lo = mid + 1;
            else hi = mid;
        }
        return lo;
    }

    /// <summary>Mmapped chunks: page-aligned headers (prev_size 0, size a page multiple with only
    /// IS_MMAPPED set) in writable memory no arena claims. Those at a mapping's start, or right
    /// after another such chunk, are taken; the others only when mp_'s count and bytes confirm them.</summary>
    private void FindMmapped(CancellationToken cancel)
    {
        var strong = new List<MmappedChunk>();
        var weak = new List<MmappedChunk>();
        foreach (CoreSegment s in _memory.Segments)
        {
            cancel.ThrowIfCancellationRequested();
            if (!s.Writable) continue;
            ulong segEnd = s.VirtualAddress + (ulong)_memory.PresentBytes(s);
            foreach (var (lo, hi) in Unclaimed(_claimed, s.VirtualAddress, segEnd))
            {
                ulong p = (lo + 0xfff) & ~0xfffUL;
                bool chained = p == s.VirtualAddress;
                while (p + 16 <= hi)
                {
                    if (MmappedChunkAt(p, hi) is MmappedChunk c)
                    {
                        (chained ? strong : weak).Add(c);
                        p += (ulong)c.MappingBytes;
                        continue;
                    }
                    chained = false;
                    p += 4096;
                }
            }
        }
        List<MmappedChunk> taken = strong;
        if (ExpectedMmapCount is int count && ExpectedMmapBytes is long bytesExpected)
        {
            long strongBytes = strong.Sum(c => c.MappingBytes), weakBytes = weak.Sum(c => c.MappingBytes);
            if (strong.Count == count && strongBytes == bytesExpected)
            {
                taken = strong;
            }
            else if (strong.Count + weak.Count == count && strongBytes + weakBytes == bytesExpected)
            {
                taken = strong.Concat(weak).ToList();
            }
            else
            {
                _warnings.Add($"mp_ counts {count} mmapped chunks ({bytesExpected:N0} bytes); {strong.Count} were found by their headers " +
                              $"({strongBytes:N0} bytes){(weak.Count > 0 ? $", and {weak.Count} doubtful ones were left out" : "")}. " +
                              "Mmapped chunks not found count as roots: leaks among them are not reported.");
            }
        }
        else if (weak.Count > 0)
        {
            _warnings.Add($"{weak.Count} possible mmapped chunk(s) inside other mappings were left out: without mp_ (libc's debug symbols) they cannot be confirmed.");
        }
        foreach (MmappedChunk c in taken.OrderBy(c => c.Address))
        {
            Mmapped.Add(c);
            _claimed.Add((c.MappingStart, c.Address + (ulong)c.Size));
        }
    }

    /// <summary>The mmapped chunk whose mapping starts at page <paramref name="p"/> and ends by
    /// <paramref name="hi"/>, or null. memalign/posix_memalign/aligned_alloc move the chunk up to
    /// the alignment and record the gap in its prev_size; the original header left at the
    /// mapping's start is not kept up to date (a realloc through mremap changes the size only in
    /// the moved header), so the moved header is looked for first, at each power-of-two alignment.</summary>
    private MmappedChunk? MmappedChunkAt(ulong p, ulong hi)
    {
        ulong room = hi - p;
        for (int shift = 5; shift <= 24; shift++)
        {
            ulong alignment = 1UL << shift;
            ulong lead = ((p + 16 + alignment - 1) & ~(alignment - 1)) - 16 - p;
            if (lead == 0) continue;
            if (lead + 16 > room) break;
            if (!_memory.TryU64(p + lead, out ulong prev) || prev != lead || !_memory.TryU64(p + lead + 8, out ulong size)) continue;
            ulong bytes = size & ~GlibcLayout.SIZE_BITS;
            if ((size & GlibcLayout.SIZE_BITS) == GlibcLayout.IS_MMAPPED && bytes >= 32 && ((lead + bytes) & 0xfff) == 0 && lead + bytes <= room)
                return new MmappedChunk(p + lead, (long)bytes, (long)lead);
        }
        if (_memory.TryU64(p, out ulong prevSize) && prevSize == 0 && _memory.TryU64(p + 8, out ulong plain) &&
            (plain & GlibcLayout.SIZE_BITS) == GlibcLayout.IS_MMAPPED)
        {
            ulong bytes = plain & ~GlibcLayout.SIZE_BITS;
            if (bytes >= 4096 && (bytes & 0xfff) == 0 && bytes <= room) return new MmappedChunk(p, (long)bytes, 0);
        }
        return null;
    }
}
