namespace LeakTools.Core.Tracing;

/// <summary>A progress snapshot of a Watch-Allocation session.</summary>
public sealed class AllocationProgress
{
    public TimeSpan Elapsed { get; set; }
    public long Allocations { get; set; }
    public long Frees { get; set; }
    public long LiveBlocks { get; set; }
    public long LiveBytes { get; set; }
    public int Stacks { get; set; }
    public int ExpiredStacks { get; set; }
}

/// <summary>Record -> aggregate -> symbolize -> report, independent of the engine that records:
/// engines feed it as an <see cref="IAllocationEventSink"/> (any thread, serialized by a lock);
/// <see cref="Tick"/> (a timer) expires blocks and reports each stack when it first expires;
/// <see cref="Finish"/> reports every stack with expired or unfreed blocks once more, final. Each
/// distinct stack is symbolized once, outside the lock, so the engine never waits for symbols.</summary>
public sealed class AllocationPipeline : IAllocationEventSink, IStackCounterSink, IFreeProblemSink
{
    private readonly object _lock = new();
    private readonly object _reportLock = new();
    private readonly AllocationTable _table;
    private readonly StackStatistics _stats = new();
    private readonly Func<ulong[], StackFrame[]> _symbolize;
    private readonly Func<StackFrame, bool> _isRuntimeFrame;
    private readonly Dictionary<int, StackFrame[]> _frames = new();
    private readonly long _originTimestamp;
    private readonly DateTime _origin;
    private bool _exited;
    private bool _countedInTarget;
    private (long Allocations, long Frees, long LiveBlocks, long LiveBytes) _totals;

    /// <param name="symbolize">Turns a stack's raw addresses into frames (innermost first).</param>
    /// <param name="isRuntimeFrame">True for frames that are not "the code that allocated" (the
    /// allocator, the C library, the dynamic loader).</param>
    public AllocationPipeline(int processId, string engine, TimeSpan expire, bool tracedFromStart,
        Func<ulong[], StackFrame[]> symbolize, Func<StackFrame, bool> isRuntimeFrame)
    {
        ProcessId = processId;
        Engine = engine;
        _table = new AllocationTable(_stats, expire, tracedFromStart);
        _symbolize = symbolize;
        _isRuntimeFrame = isRuntimeFrame;
        _originTimestamp = MonotonicClock.Now;
        _origin = DateTime.Now;
    }

    public int ProcessId { get; }
    public string Engine { get; }

    /// <summary>The engine's sampling interval in bytes, when it samples (its counts are then estimates).</summary>
    public long? SampleInterval { get; set; }

    /// <summary>Receives each stack report (first expiry, then final).</summary>
    public Action<AllocationStack>? StackReported { get; set; }

    /// <summary>Receives double and invalid frees.</summary>
    public Action<AllocationProblem>? ProblemReported { get; set; }

    public void OnStack(int stackId, ReadOnlySpan<ulong> addresses)
    {
        lock (_lock) _table.OnStack(stackId, addresses);
    }

    public void OnAllocation(ulong address, long size, int stackId, int threadId, long timestamp)
    {
        lock (_lock) _table.OnAllocation(address, size, stackId, threadId, timestamp);
    }

    public void OnFree(ulong address, int stackId, int threadId, long timestamp)
    {
        lock (_lock) _table.OnFree(address, stackId, threadId, timestamp);
    }

    // IStackCounterSink: an engine that tracks blocks and expiry itself (the in-process agent)
    // reports per-stack counters here instead of single allocations and frees.
    public void Allocated(int stackId, long size)
    {
        lock (_lock) _stats.Allocated(stackId, size);
    }

    public void Freed(int stackId, long size, bool wasExpired)
    {
        lock (_lock) _stats.Freed(stackId, size, wasExpired);
    }

    public void Expired(int stackId, long size, long allocationTimestamp, long expiryTimestamp)
    {
        lock (_lock) _stats.Expired(stackId, size, allocationTimestamp, expiryTimestamp);
    }

    public void Counters(int stackId, StackCounterValues values)
    {
        lock (_lock)
        {
            _countedInTarget = true;
            _stats.Counters(stackId, values);
        }
    }

    public void Totals(long allocations, long frees, long liveBlocks, long liveBytes)
    {
        lock (_lock)
        {
            _countedInTarget = true;
            _totals = (allocations, frees, liveBlocks, liveBytes);
        }
    }

    /// <summary>A bad free judged by the engine (the agent): described (its stacks symbolized while
    /// the engine holds the process) and reported at once.</summary>
    public void OnProblem(FreeProblem problem)
    {
        lock (_reportLock) ProblemReported?.Invoke(Describe(problem));
    }

    public AllocationProgress Progress()
    {
        lock (_lock)
        {
            return new AllocationProgress
            {
                Elapsed = TimeSpan.FromTicks((MonotonicClock.Now - _originTimestamp) / 100),
                Allocations = _countedInTarget ? _totals.Allocations : _table.AllocationsSeen,
                Frees = _countedInTarget ? _totals.Frees : _table.FreesSeen,
                LiveBlocks = _countedInTarget ? _totals.LiveBlocks : _table.LiveCount,
                LiveBytes = _countedInTarget ? _totals.LiveBytes : _table.LiveBytes,
                Stacks = _stats.Count,
                ExpiredStacks = _stats.All.Count(s => s.ExpiredCount > 0),
            };
        }
    }

    /// <summary>Expires blocks up to now and reports stacks that expired for the first time and
    /// bad frees seen since the last tick.</summary>
    public void Tick() => Tick(MonotonicClock.Now);

    public void Tick(long now)
    {
        lock (_reportLock)
        {
            List<AllocationStack> reports;
            List<FreeProblem> problems;
            lock (_lock)
            {
                _table.ExpireUntil(now);
                reports = _stats.TakeNewlyExpired().Select(id => Snapshot(_stats[id]!, final: false)).ToList();
                problems = _table.TakeProblems();
            }
            foreach (FreeProblem p in problems) ProblemReported?.Invoke(Describe(p));
            foreach (AllocationStack r in reports)
            {
                AddFrames(r);
                StackReported?.Invoke(r);
            }
        }
    }

    /// <summary>Symbolizes the stacks that have blocks now (call while the process still exists,
    /// e.g. at its exit stop, so <see cref="Finish"/> needs no /proc/PID/maps).</summary>
    public void SymbolizeLiveStacks()
    {
        lock (_reportLock)
        {
            List<StackCounters> stacks;
            lock (_lock) stacks = _stats.All.Where(s => s.LiveCount > 0 || s.ExpiredCount > 0).ToList();
            foreach (StackCounters s in stacks) FramesOf(s.Id, s.Addresses);
        }
    }

    /// <summary>The program exited (launch mode): live blocks become unfreed at exit.</summary>
    public void ProgramExited()
    {
        lock (_lock)
        {
            if (_exited) return;
            _exited = true;
            _table.ProgramExited();
            if (_countedInTarget)
            {
                // the engine's last counts were taken at the exit: what is live was never freed
                foreach (StackCounters s in _stats.All)
                {
                    s.UnfreedAtExitCount = s.LiveCount;
                    s.UnfreedAtExitBytes = s.LiveBytes;
                }
            }
        }
    }

    /// <summary>Reports every stack with expired blocks (or, after the program's exit, unfreed ones)
    /// with its final counts, most expired bytes first.</summary>
    public void Finish()
    {
        Tick();
        lock (_reportLock)
        {
            List<AllocationStack> reports;
            lock (_lock)
            {
                reports = _stats.All.Where(s => s.ExpiredCount > 0 || (_exited && s.UnfreedAtExitCount > 0))
                    .OrderByDescending(s => s.ExpiredBytes).ThenByDescending(s => s.UnfreedAtExitBytes).ThenBy(s => s.Id)
                    .Select(s => Snapshot(s, final: true)).ToList();
            }
            foreach (AllocationStack r in reports)
            {
                AddFrames(r);
                StackReported?.Invoke(r);
            }
        }
    }

    private AllocationStack Snapshot(StackCounters s, bool final) => new()
    {
        ProcessId = ProcessId,
        StackId = s.Id,
        ExpiredCount = s.ExpiredCount,
        ExpiredBytes = s.ExpiredBytes,
        FreedAfterExpiryCount = s.FreedAfterExpiryCount,
        LiveCount = s.LiveCount,
        LiveBytes = s.LiveBytes,
        AllocationCount = s.AllocationCount,
        AllocatedBytes = s.AllocatedBytes,
        UnfreedAtExitCount = _exited ? s.UnfreedAtExitCount : null,
        UnfreedAtExitBytes = _exited ? s.UnfreedAtExitBytes : null,
        FirstExpired = s.FirstExpired == 0 ? null : MonotonicClock.ToDateTime(s.FirstExpired, _originTimestamp, _origin),
        Engine = Engine,
        Estimated = s.Estimated,
        SampleInterval = s.Estimated ? SampleInterval : null,
        Final = final,
        Frames = Array.Empty<StackFrame>(),
    };

    private void AddFrames(AllocationStack r)
    {
        ulong[] addresses;
        lock (_lock) addresses = _stats[r.StackId]?.Addresses ?? Array.Empty<ulong>();
        r.Frames = FramesOf(r.StackId, addresses);
        (r.Function, r.Location) = Caller(r.Frames);
    }

    private StackFrame[] FramesOf(int stackId, ulong[] addresses)
    {
        if (stackId <= 0) return Array.Empty<StackFrame>();
        if (_frames.TryGetValue(stackId, out StackFrame[]? known)) return known;
        StackFrame[] frames;
        try { frames = _symbolize(addresses); }
        catch (LeakToolsException) { frames = addresses.Select(a => new StackFrame { Address = a }).ToArray(); }
        _frames[stackId] = frames;
        return frames;
    }

    /// <summary>The first frame outside the allocator, the C library and operator new/delete.</summary>
    public (string? Function, string? Location) Caller(StackFrame[] frames) => Caller(frames, _isRuntimeFrame);

    /// <summary>The first frame <paramref name="isRuntimeFrame"/> does not claim that is not operator
    /// new/delete (else the outermost named one), as a stack's Function and file:line Location.</summary>
    public static (string? Function, string? Location) Caller(StackFrame[] frames, Func<StackFrame, bool> isRuntimeFrame)
    {
        StackFrame? chosen = null;
        foreach (StackFrame f in frames)
        {
            if (isRuntimeFrame(f)) continue;
            if (f.Function is { } fn && (fn.StartsWith("operator new", StringComparison.Ordinal) || fn.StartsWith("operator delete", StringComparison.Ordinal))) continue;
            chosen = f;
            break;
        }
        chosen ??= frames.LastOrDefault(f => f.Function is not null) ?? frames.FirstOrDefault();
        if (chosen is null) return (null, null);
        string? function = chosen.Function ?? (chosen.Module.Length > 0 ? $"{chosen.ModuleName}+0x{chosen.ModuleOffset:x}" : $"0x{chosen.Address:x}");
        string? location = chosen.File is null ? null : chosen.Line is null ? Path.GetFileName(chosen.File) : $"{Path.GetFileName(chosen.File)}:{chosen.Line}";
        return (function, location);
    }

    private AllocationProblem Describe(FreeProblem p)
    {
        StackFrame[] frames;
        StackFrame[]? allocFrames = null, firstFree = null;
        ulong[] Addresses(int id)
        {
            lock (_lock) return _stats[id]?.Addresses ?? Array.Empty<ulong>();
        }
        frames = FramesOf(p.FreeStackId, Addresses(p.FreeStackId));
        if (p.AllocationStackId is int a) allocFrames = FramesOf(a, Addresses(a));
        if (p.FirstFreeStackId is int f) firstFree = FramesOf(f, Addresses(f));
        var (function, location) = Caller(frames);
        return new AllocationProblem
        {
            Kind = p.Kind,
            ProcessId = ProcessId,
            ThreadId = p.ThreadId,
            Address = p.Address,
            Size = p.Size,
            Time = MonotonicClock.ToDateTime(p.Timestamp, _originTimestamp, _origin),
            Function = function,
            Location = location,
            Frames = frames,
            FirstFreeFrames = firstFree,
            AllocationFrames = allocFrames,
            Engine = Engine,
        };
    }
}
