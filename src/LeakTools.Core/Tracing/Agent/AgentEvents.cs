namespace LeakTools.Core.Tracing.Agent;

/// <summary>What the controller tells the agent when a session starts.</summary>
public sealed class AgentConfig
{
    /// <summary>Age after which a live block counts as expired.</summary>
    public long ExpireNanoseconds { get; set; } = 10_000_000_000;

    /// <summary>Byte interval of sampling (jemalloc/tcmalloc style); 0 records every allocation.</summary>
    public long SampleInterval { get; set; }

    /// <summary>How often the agent thread scans for expired blocks and reports counters.</summary>
    public long TickNanoseconds { get; set; } = 100_000_000;

    /// <summary>Frames kept per stack, the allocator's entry included (2..128).</summary>
    public int Depth { get; set; } = 32;

    /// <summary>Judge every free (double and invalid frees become problems). Asked of an agent
    /// that traces from the start (launch mode) without sampling only; each free then has its stack.</summary>
    public bool CheckFrees { get; set; } = true;

    /// <summary>A tick that keeps expiry timely without scanning too often: a tenth of the
    /// expiry, between 20 ms and 1 s.</summary>
    public static long TickFor(long expireNanoseconds) => Math.Clamp(expireNanoseconds / 10, 20_000_000, 1_000_000_000);
}

/// <summary>The agent's greeting: its process, its clock, whether LD_PRELOAD loaded it, and how
/// many sessions it served before (a reused agent says more than 0).</summary>
public sealed record AgentHello(int Version, int ProcessId, long MonotonicNanoseconds, bool Launched, int EarlierSessions, string Token);

/// <summary>The agent is hooked in: relocation slots now pointing at its hooks, slots it left
/// alone (bound to another implementation), which allocator functions it found (bit per
/// <see cref="AgentProtocol.FunctionNames"/> entry), and the address of the malloc the program is
/// bound to (its module is the allocator: the C library, or a preloaded jemalloc/tcmalloc).</summary>
public sealed record AgentReady(int HookedSlots, int ForeignSlots, uint Functions, ulong MallocAddress)
{
    public IEnumerable<string> FunctionNames =>
        AgentProtocol.FunctionNames.Where((_, i) => (Functions & (1u << i)) != 0);
}

/// <summary>A block that outlived the expiry: its stack, size, allocation time (the controller's
/// CLOCK_MONOTONIC in ns) and address. Sampled blocks stand for more than themselves.</summary>
public readonly record struct AgentExpiry(int StackId, bool Sampled, long Size, long Timestamp, ulong Address);

/// <summary>A bad free the agent saw (checked frees): a free, realloc, reallocarray or cfree
/// (<see cref="Function"/>) of a pointer that was not live. <see cref="Size"/>,
/// <see cref="AllocationStackId"/> and <see cref="FirstFreeStackId"/> are those of the block freed
/// before (double free; 0 when unknown); <see cref="Timestamp"/> is the controller's CLOCK_MONOTONIC in ns.</summary>
public readonly record struct AgentProblem(AllocationProblemKind Kind, int ThreadId, ulong Address, long Size, long Timestamp,
    int StackId, int AllocationStackId, int FirstFreeStackId, string Function);

/// <summary>Absolute counters of one stack since the session began (the agent sends them when they
/// change). With sampling the plain counts are of the sampled blocks; the Estimated ones scale each
/// sampled block by 1/P(sampled), P = 1 - exp(-size/interval).</summary>
public struct AgentCounters
{
    public int StackId;
    public long AllocationCount, AllocatedBytes, FreeCount, FreedBytes;
    public long ExpiredCount, ExpiredBytes, FreedAfterExpiryCount, FreedAfterExpiryBytes;
    public double EstimatedAllocationCount, EstimatedFreeCount, EstimatedExpiredCount, EstimatedFreedAfterExpiryCount;
    public long EstimatedAllocatedBytes, EstimatedFreedBytes, EstimatedExpiredBytes, EstimatedFreedAfterExpiryBytes;

    public readonly long LiveCount => AllocationCount - FreeCount;
    public readonly long LiveBytes => AllocatedBytes - FreedBytes;
}

/// <summary>Totals of the agent at one tick.</summary>
public sealed class AgentStats
{
    public long Timestamp { get; set; }
    public long Allocations { get; set; }
    public long Frees { get; set; }
    /// <summary>Frees of pointers the agent never saw allocated (allocated before the attach, or
    /// through a path it does not hook): tolerated, passed to the allocator.</summary>
    public long UnknownFrees { get; set; }
    public long LiveBlocks { get; set; }
    public long LiveBytes { get; set; }
    public int Stacks { get; set; }
    /// <summary>fork() calls of the target since the attach: children are not traced.</summary>
    public long Forks { get; set; }
    /// <summary>Allocations counted under stack 0 because the stack table was full.</summary>
    public long StackTableFull { get; set; }
    public int HookedSlots { get; set; }
}

/// <summary>Where an agent session delivers what the agent reports, in the agent's own terms:
/// each distinct stack once (before its first use), expiries as they happen, absolute counters
/// per stack, totals per tick. Called from one thread. The allocation pipeline consumes this
/// through an adapter, exactly as it consumes the breakpoint engine's raw events.</summary>
public interface IAgentEventSink
{
    /// <summary>A distinct call stack: the allocator function's entry, then return addresses.</summary>
    void OnStack(int stackId, ReadOnlySpan<ulong> addresses);

    void OnExpired(in AgentExpiry expiry, long expiryTimestamp);

    void OnCounters(in AgentCounters counters);

    void OnStats(AgentStats stats);

    /// <summary>The program is exiting: the counters that follow are final, and their live blocks
    /// were never freed.</summary>
    void OnProgramExit();

    /// <summary>A bad free (checked frees), before it reaches the allocator; its stacks came before it.</summary>
    void OnProblem(in AgentProblem problem);

    /// <summary>A thread of the program is held until this returns: after a bad free (the allocator
    /// may abort the process once it goes on) or at the exit, with the counters just sent. What
    /// needs the live process (its memory map, to symbolize) must happen now.</summary>
    void OnHeld();
}
