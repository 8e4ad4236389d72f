using System.Diagnostics;

namespace LeakTools.Core.Tracing;

/// <summary>Where an allocation engine sends what it records. An engine (the ptrace breakpoint
/// engine here; later the in-process agent) only records: raw addresses of each distinct call stack
/// once, then allocations and frees naming stacks by id. Expiry, per-stack counters and symbols are
/// the pipeline's business (<see cref="AllocationTable"/>, <see cref="StackStatistics"/>,
/// <see cref="AllocationPipeline"/>), testable without a process. Calls come from one thread at a time.
/// An engine that does expiry itself (the agent keeps its live table in the target) feeds
/// <see cref="StackStatistics"/> directly through <see cref="IStackCounterSink"/> instead.</summary>
public interface IAllocationEventSink
{
    /// <summary>A new distinct call stack: <paramref name="addresses"/> innermost first (the
    /// allocator's entry, then return addresses). Ids are dense, from 1, and come before their first use.</summary>
    void OnStack(int stackId, ReadOnlySpan<ulong> addresses);

    /// <summary>A block of <paramref name="size"/> bytes was returned at <paramref name="address"/>.</summary>
    void OnAllocation(ulong address, long size, int stackId, int threadId, long timestamp);

    /// <summary><paramref name="address"/> was freed (or released by realloc).</summary>
    void OnFree(ulong address, int stackId, int threadId, long timestamp);
}

/// <summary>The per-stack level of the pipeline: what an engine that tracks blocks and expiry
/// itself reports (counters per stack, expiries as they happen).</summary>
public interface IStackCounterSink
{
    void OnStack(int stackId, ReadOnlySpan<ulong> addresses);
    void Allocated(int stackId, long size);
    void Freed(int stackId, long size, bool wasExpired);
    void Expired(int stackId, long size, long allocationTimestamp, long expiryTimestamp);

    /// <summary>Absolute counts of one stack since the session began, from an engine that counts
    /// in the target (the in-process agent sends them when they change): they replace the sink's.</summary>
    void Counters(int stackId, StackCounterValues values);

    /// <summary>Session totals of such an engine (for progress).</summary>
    void Totals(long allocations, long frees, long liveBlocks, long liveBytes);
}

/// <summary>Where an engine that judges frees itself (the in-process agent in launch mode) reports
/// bad frees, naming stacks it sent before. The engine holds the freeing thread meanwhile (the
/// allocator may abort the process next), so the sink symbolizes and reports at once.</summary>
public interface IFreeProblemSink
{
    void OnProblem(FreeProblem problem);
}

/// <summary>A stack's counts as an engine that counts in the target reports them. With sampling
/// they are estimates (each sampled block scaled by 1/P(sampled)): <see cref="Estimated"/>.</summary>
public readonly record struct StackCounterValues(long AllocationCount, long AllocatedBytes, long LiveCount, long LiveBytes,
    long ExpiredCount, long ExpiredBytes, long FreedAfterExpiryCount, bool Estimated);

/// <summary>An allocation engine, attached (or launched) and ready: <see cref="Run"/> feeds a sink
/// until <see cref="Stop"/>, cancellation, or the target's exit or exec, then detaches. The helper
/// command drives any engine through this (the breakpoint engine here; the in-process agent later).</summary>
public interface IAllocationEventSource : IDisposable
{
    /// <summary>Engine name shown in the output (Breakpoint, Agent).</summary>
    string Engine { get; }

    /// <summary>The traced process.</summary>
    int ProcessId { get; }

    /// <summary>The module whose allocator is traced (its frames are not "the code that allocated").</summary>
    string? AllocatorModule { get; }

    /// <summary>Called when the target starts to exit, while its memory map is still readable.</summary>
    Action? ProcessExiting { get; set; }

    EngineOutcome Run(IAllocationEventSink sink, CancellationToken cancel);

    /// <summary>Ends the session from any thread (detaching).</summary>
    void Stop();

    /// <summary>Launch mode: ends the program like Ctrl+C, SIGKILL after <paramref name="grace"/>.</summary>
    void Terminate(TimeSpan grace);

    /// <summary>Hands over records the engine buffered (called before expiry is judged).</summary>
    void Flush();
}

/// <summary>Timestamps of the pipeline: CLOCK_MONOTONIC in nanoseconds (sub-second ages; memleax's
/// whole-second time() made blocks look a second younger than the expiry).</summary>
public static class MonotonicClock
{
    private static readonly double s_nsPerTick = 1e9 / Stopwatch.Frequency;

    public static long Now => Stopwatch.Frequency == 1_000_000_000 ? Stopwatch.GetTimestamp() : (long)(Stopwatch.GetTimestamp() * s_nsPerTick);

    public static long FromTimeSpan(TimeSpan span) => span.Ticks * 100;

    /// <summary>Wall-clock time of a monotonic timestamp, relative to a pair taken together.</summary>
    public static DateTime ToDateTime(long timestamp, long originTimestamp, DateTime origin) =>
        origin + TimeSpan.FromTicks((timestamp - originTimestamp) / 100);
}
