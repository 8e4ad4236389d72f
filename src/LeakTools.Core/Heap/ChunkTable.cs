namespace LeakTools.Core.Heap;

/// <summary>What a heap chunk is, once the header walk and every free list have been read.</summary>
internal enum ChunkKind : byte
{
    /// <summary>In use: the next chunk's PREV_INUSE is set and no free list holds it.</summary>
    Used = 0,
    Tcache,
    Fastbin,
    Unsorted,
    Smallbin,
    Largebin,
    /// <summary>Free by its header (PREV_INUSE clear after it) but on no list that was read.</summary>
    Unlisted,
    /// <summary>In use by its header, but something says it may be free (a tcache key, a bin link)
    /// or its state cannot be read: never reported, and its words count as roots.</summary>
    Uncertain,
}

/// <summary>The chunks of every arena heap, in address order, as parallel arrays (a million chunks
/// cost ~21 MB).</summary>
internal sealed class ChunkTable
{
    private ulong[] _address = new ulong[1024];
    private long[] _size = new long[1024];
    private ChunkKind[] _kind = new ChunkKind[1024];
    private short[] _arena = new short[1024];

    public int Count { get; private set; }

    public ulong Address(int i) => _address[i];

    public long Size(int i) => _size[i];

    public ChunkKind Kind(int i) => _kind[i];

    public void SetKind(int i, ChunkKind kind) => _kind[i] = kind;

    public int Arena(int i) => _arena[i];

    public void Add(ulong address, long size, ChunkKind kind, int arena)
    {
        if (Count == _address.Length)
        {
            int grown = Count * 2;
            Array.Resize(ref _address, grown);
            Array.Resize(ref _size, grown);
            Array.Resize(ref _kind, grown);
            Array.Resize(ref _arena, grown);
        }
        _address[Count] = address;
        _size[Count] = size;
        _kind[Count] = kind;
        _arena[Count] = (short)arena;
        Count++;
    }

    /// <summary>Puts the chunks in address order (runs are walked one after another, not in order).</summary>
    public void Sort()
    {
        int[] order = Enumerable.Range(0, Count).ToArray();
        ulong[] keys = _address.AsSpan(0, Count).ToArray();
        Array.Sort(keys, order);
        _address = keys;
        _size = order.Select(i => _size[i]).ToArray();
        _kind = order.Select(i => _kind[i]).ToArray();
        _arena = order.Select(i => _arena[i]).ToArray();
    }

    /// <summary>The chunk starting at <paramref name="address"/>, or -1.</summary>
    public int Find(ulong address)
    {
        int lo = 0, hi = Count - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            ulong a = _address[mid];
            if (a == address) return mid;
            if (a < address) lo = mid + 1;
            else hi = mid - 1;
        }
        return -1;
    }
}
