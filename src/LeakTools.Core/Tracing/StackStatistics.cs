namespace LeakTools.Core.Tracing;

/// <summary>Counters of one call stack.</summary>
public sealed class StackCounters
{
    public StackCounters(int id, ulong[] addresses)
    {
        Id = id;
        Addresses = addresses;
    }

    public int Id { get; }
    public ulong[] Addresses { get; internal set; }
    public long AllocationCount;
    public long AllocatedBytes;
    public long LiveCount;
    public long LiveBytes;
    public long ExpiredCount;
    public long ExpiredBytes;
    public long FreedAfterExpiryCount;
    public long UnfreedAtExitCount;
    public long UnfreedAtExitBytes;
    /// <summary>Monotonic timestamp of the first expiry, or 0.</summary>
    public long FirstExpired;
    public bool Reported;
    /// <summary>The counts are estimates (sampling).</summary>
    public bool Estimated;
}

/// <summary>Per-stack counters, plain data: which stacks allocated how much, how much is live,
/// how much expired, and which stacks expired for the first time since the last look.</summary>
public sealed class StackStatistics : IStackCounterSink
{
    private readonly List<StackCounters?> _stacks = new() { null };
    private readonly List<int> _newlyExpired = new();

    public int Count => _stacks.Count - 1;

    public StackCounters? this[int stackId] => stackId > 0 && stackId < _stacks.Count ? _stacks[stackId] : null;

    public IEnumerable<StackCounters> All => _stacks.Skip(1).Where(s => s is not null)!;

    public void OnStack(int stackId, ReadOnlySpan<ulong> addresses)
    {
        while (_stacks.Count <= stackId) _stacks.Add(null);
        StackCounters? known = _stacks[stackId];
        if (known is null) _stacks[stackId] = new StackCounters(stackId, addresses.ToArray());
        else if (known.Addresses.Length == 0) known.Addresses = addresses.ToArray(); // counted before its addresses came
    }

    private StackCounters Get(int stackId)
    {
        StackCounters? s = this[stackId];
        if (s is null)
        {
            OnStack(stackId, ReadOnlySpan<ulong>.Empty);
            s = _stacks[stackId]!;
        }
        return s;
    }

    public void Allocated(int stackId, long size)
    {
        StackCounters s = Get(stackId);
        s.AllocationCount++;
        s.AllocatedBytes += size;
        s.LiveCount++;
        s.LiveBytes += size;
    }

    public void Freed(int stackId, long size, bool wasExpired)
    {
        StackCounters s = Get(stackId);
        s.LiveCount--;
        s.LiveBytes -= size;
        if (wasExpired) s.FreedAfterExpiryCount++;
    }

    public void Expired(int stackId, long size, long allocationTimestamp, long expiryTimestamp)
    {
        StackCounters s = Get(stackId);
        s.ExpiredCount++;
        s.ExpiredBytes += size;
        if (s.FirstExpired == 0)
        {
            s.FirstExpired = expiryTimestamp;
            _newlyExpired.Add(stackId);
        }
    }

    public void Counters(int stackId, StackCounterValues v)
    {
        StackCounters s = Get(stackId);
        s.AllocationCount = v.AllocationCount;
        s.AllocatedBytes = v.AllocatedBytes;
        s.LiveCount = v.LiveCount;
        s.LiveBytes = v.LiveBytes;
        s.ExpiredCount = v.ExpiredCount;
        s.ExpiredBytes = v.ExpiredBytes;
        s.FreedAfterExpiryCount = v.FreedAfterExpiryCount;
        s.Estimated = v.Estimated;
    }

    /// <summary>Totals belong to the pipeline's progress; plain statistics have nowhere to keep them.</summary>
    public void Totals(long allocations, long frees, long liveBlocks, long liveBytes)
    {
    }

    /// <summary>A block still live when the program exited.</summary>
    public void UnfreedAtExit(int stackId, long size)
    {
        StackCounters s = Get(stackId);
        s.UnfreedAtExitCount++;
        s.UnfreedAtExitBytes += size;
    }

    /// <summary>Stacks whose first block expired since the last call, in order of expiry.</summary>
    public List<int> TakeNewlyExpired()
    {
        var list = new List<int>(_newlyExpired);
        _newlyExpired.Clear();
        return list;
    }
}
