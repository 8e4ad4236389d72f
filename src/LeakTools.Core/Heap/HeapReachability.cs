using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using LeakTools.Core.Dumps;
using LeakTools.Core.Tracing;

namespace LeakTools.Core.Heap;

/// <summary>Which blocks the process could still reach when the core was taken. Roots are every
/// thread's registers (general, x87/SSE and XSAVE state) and every word of memory the core holds
/// that the heap does not account for: data, bss, TLS (static TLS blocks sit at the top of each
/// pthread stack and in ld.so's allocation for the main thread), other mappings, and thread stacks
/// from 128 bytes below SP (the red zone) upwards — the dead frames below are left out. Any aligned
/// word pointing anywhere inside a block, interior pointers included, keeps it alive; blocks
/// reached are scanned in turn. What is left is leaked; a leaked block no other leaked block points
/// to is unreferenced.</summary>
internal sealed unsafe class HeapReachability
{
    private const int RedZone = 128;

    private readonly CoreMemory _memory;
    private readonly HeapBlocks _blocks;
    private readonly bool[] _reached;
    private int[] _stack = new int[4096];
    private int _depth;

    private HeapReachability(CoreMemory memory, HeapBlocks blocks)
    {
        _memory = memory;
        _blocks = blocks;
        _reached = new bool[blocks.Count];
    }

    public bool Reached(int block) => _reached[block];

    /// <summary>For each leaked block, how many other leaked blocks point into it.</summary>
    public int[] ReferencedBy { get; private set; } = Array.Empty<int>();

    public long RootBytes { get; private set; }
    public long BlockBytes { get; private set; }
    public long LeakedBlockBytes { get; private set; }
    /// <summary>Writable memory outside the heap that the core does not hold (coredump_filter, truncation).</summary>
    public long MissingRootBytes { get; private set; }

    /// <param name="notRoots">Memory that holds block addresses without keeping the blocks alive
    /// (an allocation tracer's own tables), left out of the roots.</param>
    public static HeapReachability Run(CoreMemory memory, GlibcHeap heap, HeapBlocks blocks, List<string> warnings, CancellationToken cancel,
        IReadOnlyList<(ulong Lo, ulong Hi)>? notRoots = null)
    {
        var r = new HeapReachability(memory, blocks);
        r.MarkFromRoots(heap, notRoots ?? Array.Empty<(ulong, ulong)>(), cancel);
        r.CountLeakedReferences(cancel);
        if (r.MissingRootBytes > 0)
        {
            warnings.Add($"{r.MissingRootBytes:N0} bytes of writable memory outside the heap are not in the core (coredump_filter or a truncated file): " +
                         "a block referenced only from there would show as leaked.");
        }
        return r;
    }

    private interface IHits
    {
        void Hit(int block);
    }

    private struct MarkHits : IHits
    {
        public HeapReachability Owner;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Hit(int block)
        {
            if (Owner._reached[block]) return;
            Owner._reached[block] = true;
            Owner.Push(block);
        }
    }

    private struct ReferenceHits : IHits
    {
        public bool[] Reached;
        public int[] Count;
        public int[] LastSource;
        public int Source;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Hit(int block)
        {
            if (Reached[block] || block == Source || LastSource[block] == Source) return;
            LastSource[block] = Source;
            Count[block]++;
        }
    }

    private void Push(int block)
    {
        if (_depth == _stack.Length) Array.Resize(ref _stack, _stack.Length * 2);
        _stack[_depth++] = block;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Scan<T>(byte* p, long bytes, ref T hits) where T : struct, IHits
    {
        ulong* w = (ulong*)p;
        long n = bytes >> 3;
        ulong min = _blocks.Min, span = _blocks.Span;
        HeapBlocks blocks = _blocks;
        for (long k = 0; k < n; k++)
        {
            ulong v = w[k];
            if (v - min >= span) continue;
            int b = blocks.Find(v);
            if (b >= 0) hits.Hit(b);
        }
    }

    /// <summary>Scans the words of [lo, hi) that the core holds.</summary>
    private long ScanMemory<T>(ulong lo, ulong hi, ref T hits) where T : struct, IHits
    {
        lo = (lo + 7) & ~7UL;
        long scanned = 0;
        while (lo < hi)
        {
            byte* p = _memory.Pointer(lo, out long available);
            if (p is null) break;
            long n = Math.Min(available, (long)(hi - lo));
            Scan(p, n, ref hits);
            scanned += n;
            lo += (ulong)n;
        }
        return scanned;
    }

    private void ScanBlock<T>(int block, ref T hits) where T : struct, IHits
    {
        ulong start = _blocks.Start(block);
        long scanned = ScanMemory(start, start + (ulong)_blocks.Size(block), ref hits);
        if (typeof(T) == typeof(MarkHits)) BlockBytes += scanned;
        else LeakedBlockBytes += scanned;
    }

    private void MarkFromRoots(GlibcHeap heap, IReadOnlyList<(ulong Lo, ulong Hi)> notRoots, CancellationToken cancel)
    {
        var hits = new MarkHits { Owner = this };
        // Blocks whose state is in doubt are taken as reached: never reported, and what they point to lives.
        for (int b = 0; b < _blocks.Count; b++)
        {
            if (_blocks.Uncertain(b)) hits.Hit(b);
        }

        // Registers of every thread: general purpose, then the FXSAVE and XSAVE areas (pointers
        // pass through vector registers in memcpy and friends).
        foreach (CoreThread t in _memory.Core.Threads)
        {
            UserRegisters regs = t.Registers;
            Scan((byte*)&regs, UserRegisters.Size, ref hits);
            foreach (byte[]? set in new[] { t.FpRegisters, t.XState })
            {
                if (set is null || set.Length < 8) continue;
                fixed (byte* p = set) Scan(p, set.Length & ~7, ref hits);
            }
        }

        // Memory: everything the core holds except the heap's own chunks and the dead part of each stack.
        var excluded = new List<(ulong Lo, ulong Hi)>(heap.Claimed);
        excluded.AddRange(notRoots);
        ulong? initialStack = _memory.Core.AuxvValue(25 /* AT_RANDOM: 16 bytes on the initial stack */);
        foreach (CoreThread t in _memory.Core.Threads)
        {
            ulong sp = t.Registers.Rsp;
            CoreSegment? seg = _memory.SegmentAt(sp);
            if (seg is null) continue;
            // Only a known stack is cut below SP: the initial stack (it holds AT_RANDOM's bytes) or
            // a pthread stack (glibc puts the thread's TCB, where fs points, at its top). A thread
            // running on a sigaltstack in .bss or on a coroutine stack in a heap block keeps it all.
            bool isStack = (initialStack is ulong r && r >= seg.VirtualAddress && r < seg.End) ||
                           (t.Registers.FsBase > sp && t.Registers.FsBase < seg.End);
            if (!isStack) continue;
            ulong live = (sp - RedZone) & ~7UL;
            if (live > seg.VirtualAddress) excluded.Add((seg.VirtualAddress, live));
        }
        excluded.Sort();
        var merged = new List<(ulong Lo, ulong Hi)>();
        foreach (var r in excluded)
        {
            if (merged.Count > 0 && r.Lo <= merged[^1].Hi) merged[^1] = (merged[^1].Lo, Math.Max(merged[^1].Hi, r.Hi));
            else merged.Add(r);
        }
        foreach (CoreSegment s in _memory.Segments)
        {
            cancel.ThrowIfCancellationRequested();
            long present = _memory.PresentBytes(s);
            ulong end = s.VirtualAddress + (ulong)present;
            foreach (var (lo, hi) in GlibcHeap.Unclaimed(merged, s.VirtualAddress, end))
            {
                RootBytes += ScanMemory(lo, hi, ref hits);
                Drain(ref hits, cancel);
            }
            if (s.Writable && (ulong)present < s.MemorySize)
            {
                foreach (var (lo, hi) in GlibcHeap.Unclaimed(merged, end, s.End)) MissingRootBytes += (long)(hi - lo);
            }
        }
        Drain(ref hits, cancel);
    }

    private void Drain(ref MarkHits hits, CancellationToken cancel)
    {
        int sinceCheck = 0;
        while (_depth > 0)
        {
            int b = _stack[--_depth];
            ScanBlock(b, ref hits);
            if (++sinceCheck == 4096)
            {
                sinceCheck = 0;
                cancel.ThrowIfCancellationRequested();
            }
        }
    }

    private void CountLeakedReferences(CancellationToken cancel)
    {
        int n = _blocks.Count;
        var hits = new ReferenceHits { Reached = _reached, Count = new int[n], LastSource = new int[n], Source = -1 };
        Array.Fill(hits.LastSource, -1);
        for (int b = 0; b < n; b++)
        {
            if (_reached[b]) continue;
            if ((b & 0xfff) == 0) cancel.ThrowIfCancellationRequested();
            hits.Source = b;
            ScanBlock(b, ref hits);
        }
        ReferencedBy = hits.Count;
    }
}
