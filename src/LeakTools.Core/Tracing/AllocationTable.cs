namespace LeakTools.Core.Tracing;

/// <summary>A bad free found by <see cref="AllocationTable"/>.</summary>
public readonly record struct FreeProblem(AllocationProblemKind Kind, ulong Address, int FreeStackId, int ThreadId, long Timestamp,
    long? Size, int? AllocationStackId, int? FirstFreeStackId);

/// <summary>The live blocks of a traced process and their expiry, plain data: allocations and frees
/// in, per-stack counters (<see cref="StackStatistics"/>) and bad frees out. A block still live
/// <see cref="Expire"/> after its allocation counts once as expired for its stack; freeing it later
/// counts as freed after expiry. Remembers recently freed blocks to tell a double free (a block freed
/// twice) from a free of a pointer never allocated (only meaningful when tracing from the start).</summary>
public sealed class AllocationTable : IAllocationEventSink
{
    private struct Block
    {
        public long Size;
        public long Timestamp;
        public long Sequence;
        public int StackId;
        public bool Expired;
    }

    private readonly record struct Freed(int FreeStackId, int AllocationStackId, long Size);

    private readonly Dictionary<ulong, Block> _live = new();
    private readonly Queue<(ulong Address, long Sequence, long Timestamp)> _expiryQueue = new();
    private readonly Dictionary<ulong, Freed> _freed = new();
    private long _sequence;

    /// <param name="expire">Age at which a live block counts as expired (memleax's -e).</param>
    /// <param name="tracedFromStart">True when every allocation was seen (launch mode): frees of
    /// unknown pointers are then InvalidFree problems.</param>
    public AllocationTable(StackStatistics statistics, TimeSpan expire, bool tracedFromStart = false)
    {
        Statistics = statistics;
        Expire = expire;
        ExpireNanoseconds = MonotonicClock.FromTimeSpan(expire);
        TracedFromStart = tracedFromStart;
    }

    public StackStatistics Statistics { get; }
    public TimeSpan Expire { get; }
    public long ExpireNanoseconds { get; }
    public bool TracedFromStart { get; }

    /// <summary>Most freed addresses remembered for double-free detection.</summary>
    public int FreedMemory { get; init; } = 1 << 20;

    public long AllocationsSeen { get; private set; }
    public long FreesSeen { get; private set; }
    public int LiveCount => _live.Count;
    public long LiveBytes { get; private set; }

    /// <summary>Bad frees found since the last <see cref="TakeProblems"/>.</summary>
    public List<FreeProblem> Problems { get; } = new();

    public void OnStack(int stackId, ReadOnlySpan<ulong> addresses) => Statistics.OnStack(stackId, addresses);

    public void OnAllocation(ulong address, long size, int stackId, int threadId, long timestamp)
    {
        if (address == 0) return; // a failed allocation is not an allocation
        AllocationsSeen++;
        if (_live.Remove(address, out Block stale))
        {
            // The allocator handed out a block we still thought live: its free escaped us
            // (freed through an unhooked path). Forget it silently.
            LiveBytes -= stale.Size;
            Statistics.Freed(stale.StackId, stale.Size, stale.Expired);
        }
        _freed.Remove(address);
        long seq = ++_sequence;
        _live[address] = new Block { Size = size, Timestamp = timestamp, Sequence = seq, StackId = stackId };
        LiveBytes += size;
        _expiryQueue.Enqueue((address, seq, timestamp));
        Statistics.Allocated(stackId, size);
    }

    /// <summary>A free; <paramref name="stackId"/> 0 when the engine logged it without a stack
    /// (then it cannot take part in bad-free reports).</summary>
    public void OnFree(ulong address, int stackId, int threadId, long timestamp)
    {
        if (address == 0) return; // free(NULL) is a no-op
        FreesSeen++;
        if (_live.Remove(address, out Block b))
        {
            LiveBytes -= b.Size;
            Statistics.Freed(b.StackId, b.Size, b.Expired);
            if (stackId != 0 && _freed.Count < FreedMemory) _freed[address] = new Freed(stackId, b.StackId, b.Size);
            return;
        }
        if (stackId == 0) return; // a free recorded without its stack (an engine's free log): nothing to report
        if (_freed.Remove(address, out Freed first))
        {
            Problems.Add(new FreeProblem(AllocationProblemKind.DoubleFree, address, stackId, threadId, timestamp, first.Size, first.AllocationStackId, first.FreeStackId));
        }
        else if (TracedFromStart)
        {
            Problems.Add(new FreeProblem(AllocationProblemKind.InvalidFree, address, stackId, threadId, timestamp, null, null, null));
        }
    }

    /// <summary>Marks blocks older than <see cref="Expire"/> at <paramref name="now"/> as expired.</summary>
    public void ExpireUntil(long now)
    {
        while (_expiryQueue.TryPeek(out var head) && now - head.Timestamp >= ExpireNanoseconds)
        {
            _expiryQueue.Dequeue();
            if (!_live.TryGetValue(head.Address, out Block b) || b.Sequence != head.Sequence) continue; // freed meanwhile
            b.Expired = true;
            _live[head.Address] = b;
            Statistics.Expired(b.StackId, b.Size, b.Timestamp, now);
        }
    }

    /// <summary>The program exited: every block still live is unfreed at exit.</summary>
    public void ProgramExited()
    {
        foreach (Block b in _live.Values) Statistics.UnfreedAtExit(b.StackId, b.Size);
    }

    public List<FreeProblem> TakeProblems()
    {
        var list = new List<FreeProblem>(Problems);
        Problems.Clear();
        return list;
    }
}
