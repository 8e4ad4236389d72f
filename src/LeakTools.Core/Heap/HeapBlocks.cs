using System.Runtime.CompilerServices;

namespace LeakTools.Core.Heap;

/// <summary>The allocations of a heap (in-use chunks and mmapped chunks) in address order, with
/// a lookup from any address inside a block — interior pointers included — to its index: a binary
/// search over the heap's regions, then a granule table (one entry per 1 KiB) that leaves a few
/// blocks to step through.</summary>
internal sealed class HeapBlocks
{
    private const int GranuleShift = 10;
    private readonly ulong[] _start;
    private readonly ulong[] _end;
    private readonly int[] _arena;
    private readonly bool[] _uncertain;
    private readonly long[] _chunkSize;
    private readonly ulong[] _regionLo;
    private readonly ulong[] _regionHi;
    private readonly int[][] _granules;
    private readonly int[] _regionEnd;
    private readonly ulong _min;
    private readonly ulong _span;

    private HeapBlocks(List<(ulong Start, ulong End, int Arena, bool Uncertain, long ChunkSize)> blocks, IReadOnlyList<(ulong Lo, ulong Hi)> regions)
    {
        int n = blocks.Count;
        _start = new ulong[n];
        _end = new ulong[n];
        _arena = new int[n];
        _uncertain = new bool[n];
        _chunkSize = new long[n];
        for (int i = 0; i < n; i++)
        {
            (_start[i], _end[i], _arena[i], _uncertain[i], _chunkSize[i]) = blocks[i];
        }
        // Regions that hold blocks; each gets a granule table.
        var lo = new List<ulong>();
        var hi = new List<ulong>();
        var tables = new List<int[]>();
        var ends = new List<int>();
        int b = 0;
        foreach (var (rLo, rHi) in regions)
        {
            while (b < n && _start[b] < rLo) b++;
            int first = b;
            while (b < n && _start[b] < rHi) b++;
            if (b == first) continue;
            ulong spanBytes = rHi - rLo;
            var table = new int[(int)((spanBytes + (1UL << GranuleShift) - 1) >> GranuleShift) + 1];
            int k = first;
            for (int g = 0; g < table.Length; g++)
            {
                ulong granuleStart = rLo + ((ulong)g << GranuleShift);
                while (k < b && _end[k] <= granuleStart) k++;
                table[g] = k;
            }
            lo.Add(rLo);
            hi.Add(rHi);
            tables.Add(table);
            ends.Add(b);
        }
        _regionLo = lo.ToArray();
        _regionHi = hi.ToArray();
        _granules = tables.ToArray();
        _regionEnd = ends.ToArray();
        _min = n == 0 ? 1 : _regionLo[0];
        _span = n == 0 ? 0 : _regionHi[^1] - _min;
    }

    public int Count => _start.Length;

    /// <summary>User address (what malloc returned).</summary>
    public ulong Start(int i) => _start[i];

    /// <summary>Usable size (what malloc_usable_size says).</summary>
    public long Size(int i) => (long)(_end[i] - _start[i]);

    public long ChunkSize(int i) => _chunkSize[i];

    /// <summary>The arena's index, or -1 for an mmapped chunk.</summary>
    public int Arena(int i) => _arena[i];

    public bool Uncertain(int i) => _uncertain[i];

    /// <summary>Lowest address any block may hold and the span above it (a one-compare pre-filter).</summary>
    public ulong Min => _min;
    public ulong Span => _span;

    public static HeapBlocks From(GlibcHeap heap)
    {
        var list = new List<(ulong, ulong, int, bool, long)>(heap.Chunks.Count + heap.Mmapped.Count);
        ChunkTable c = heap.Chunks;
        int m = 0;
        var mm = heap.Mmapped;
        for (int i = 0; i <= c.Count; i++)
        {
            ulong next = i < c.Count ? c.Address(i) : ulong.MaxValue;
            while (m < mm.Count && mm[m].Address < next)
            {
                list.Add((mm[m].Address + 16, mm[m].Address + (ulong)GlibcLayout.UsableSize(mm[m].Size, mmapped: true) + 16, -1, false, mm[m].Size));
                m++;
            }
            if (i == c.Count) break;
            ChunkKind kind = c.Kind(i);
            if (kind is not (ChunkKind.Used or ChunkKind.Uncertain)) continue;
            ulong user = c.Address(i) + 16;
            list.Add((user, user + (ulong)GlibcLayout.UsableSize(c.Size(i), mmapped: false), c.Arena(i), kind == ChunkKind.Uncertain, c.Size(i)));
        }
        return new HeapBlocks(list, heap.Claimed);
    }

    /// <summary>The block holding <paramref name="address"/> (start inclusive, end exclusive), or -1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    public int Find(ulong address)
    {
        if (address - _min >= _span) return -1;
        ulong[] regionLo = _regionLo;
        int lo = 0, hi = regionLo.Length - 1, r = -1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (regionLo[mid] <= address) { r = mid; lo = mid + 1; }
            else hi = mid - 1;
        }
        if (r < 0 || address >= _regionHi[r]) return -1;
        int i = _granules[r][(int)((address - regionLo[r]) >> GranuleShift)];
        int end = _regionEnd[r];
        ulong[] start = _start, stop = _end;
        for (; i < end; i++)
        {
            if (start[i] > address) return -1;
            if (address < stop[i]) return i;
        }
        return -1;
    }
}
