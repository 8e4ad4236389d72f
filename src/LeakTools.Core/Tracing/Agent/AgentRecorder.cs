namespace LeakTools.Core.Tracing.Agent;

/// <summary>Keeps what an agent session reported, plain data: each stack's addresses and latest
/// counters, the first expiry per stack, every expired block, the latest totals, bad frees.</summary>
public sealed class AgentRecorder : IAgentEventSink
{
    private readonly object _lock = new();

    public Dictionary<int, ulong[]> Stacks { get; } = new();
    public Dictionary<int, AgentCounters> Counters { get; } = new();
    /// <summary>Monotonic time (ns) of each stack's first expiry.</summary>
    public Dictionary<int, long> FirstExpired { get; } = new();
    public List<AgentExpiry> Expired { get; } = new();
    public AgentStats? Stats { get; private set; }
    public bool ProgramExited { get; private set; }
    /// <summary>Bad frees (checked frees), in order.</summary>
    public List<AgentProblem> Problems { get; } = new();
    /// <summary>How many times the agent held a thread for the controller (SYNC).</summary>
    public int Holds { get; private set; }

    /// <summary>Called (on the session's thread) when a stack expires for the first time.</summary>
    public Action<int>? StackFirstExpired { get; set; }

    public object SyncRoot => _lock;

    public void OnStack(int stackId, ReadOnlySpan<ulong> addresses)
    {
        lock (_lock) Stacks[stackId] = addresses.ToArray();
    }

    public void OnExpired(in AgentExpiry expiry, long expiryTimestamp)
    {
        bool first;
        lock (_lock)
        {
            Expired.Add(expiry);
            first = FirstExpired.TryAdd(expiry.StackId, expiryTimestamp);
        }
        if (first) StackFirstExpired?.Invoke(expiry.StackId);
    }

    public void OnCounters(in AgentCounters counters)
    {
        lock (_lock) Counters[counters.StackId] = counters;
    }

    public void OnStats(AgentStats stats)
    {
        lock (_lock) Stats = stats;
    }

    public void OnProgramExit()
    {
        lock (_lock) ProgramExited = true;
    }

    public void OnProblem(in AgentProblem problem)
    {
        lock (_lock) Problems.Add(problem);
    }

    public void OnHeld()
    {
        lock (_lock) Holds++;
    }
}
