namespace LeakTools;

/// <summary>One call stack of Watch-Allocation's report, memleax style: how many of the blocks it
/// allocated outlived the expiry, how many are still live, and where it is. Written when the stack
/// first expires (Final false) and again with its final counts when the session ends (Final true).</summary>
public sealed class AllocationStack
{
    public int ProcessId { get; set; }

    /// <summary>Dense id of the distinct call stack within the session (1, 2, ...).</summary>
    public int StackId { get; set; }

    /// <summary>Blocks from this stack still live -Expire after their allocation.</summary>
    public long ExpiredCount { get; set; }

    public long ExpiredBytes { get; set; }

    /// <summary>Expired blocks that were freed later after all (memleax's "freed after expiry").</summary>
    public long FreedAfterExpiryCount { get; set; }

    /// <summary>Blocks from this stack live now (expired or not).</summary>
    public long LiveCount { get; set; }

    public long LiveBytes { get; set; }

    /// <summary>Every allocation seen from this stack during the session.</summary>
    public long AllocationCount { get; set; }

    public long AllocatedBytes { get; set; }

    /// <summary>Launch mode: blocks never freed when the program exited; null while it runs or in attach mode.</summary>
    public long? UnfreedAtExitCount { get; set; }

    public long? UnfreedAtExitBytes { get; set; }

    /// <summary>When the first block of this stack expired (local time); null if none did.</summary>
    public DateTime? FirstExpired { get; set; }

    /// <summary>The first function outside the allocator and the C library (the code that allocated).</summary>
    public string? Function { get; set; }

    /// <summary>file:line of <see cref="Function"/>'s frame, when the module has line information.</summary>
    public string? Location { get; set; }

    /// <summary>The call stack, innermost first: the allocator's entry, then each caller (inlined
    /// functions as frames of their own).</summary>
    public StackFrame[] Frames { get; set; } = Array.Empty<StackFrame>();

    /// <summary>The engine that recorded it: Breakpoint (ptrace) or Agent (in-process).</summary>
    public string Engine { get; set; } = "";

    /// <summary>The counts are estimates: the agent sampled allocations (-SampleInterval), and each
    /// sampled block stands for 1/P(sampled) blocks of its size, P = 1 - exp(-size/interval).</summary>
    public bool Estimated { get; set; }

    /// <summary>The sampling interval in bytes when <see cref="Estimated"/>; otherwise null.</summary>
    public long? SampleInterval { get; set; }

    /// <summary>True for the update written when the session ended.</summary>
    public bool Final { get; set; }
}

/// <summary>What went wrong with a free.</summary>
public enum AllocationProblemKind
{
    /// <summary>A block freed a second time (without being allocated again in between).</summary>
    DoubleFree,
    /// <summary>A pointer freed that the allocator never returned (launch mode: traced from the first allocation).</summary>
    InvalidFree,
}

/// <summary>A bad free seen by Watch-Allocation, with the stacks memwatch and valgrind show.</summary>
public sealed class AllocationProblem
{
    public AllocationProblemKind Kind { get; set; }

    public int ProcessId { get; set; }

    public int ThreadId { get; set; }

    /// <summary>The pointer given to free (or realloc).</summary>
    public ulong Address { get; set; }

    /// <summary>Size of the block when it was allocated, if known.</summary>
    public long? Size { get; set; }

    public DateTime Time { get; set; }

    /// <summary>The first function outside the allocator and the C library in the bad free's stack.</summary>
    public string? Function { get; set; }

    public string? Location { get; set; }

    /// <summary>The stack of the bad free.</summary>
    public StackFrame[] Frames { get; set; } = Array.Empty<StackFrame>();

    /// <summary>DoubleFree: where the block was freed the first time.</summary>
    public StackFrame[]? FirstFreeFrames { get; set; }

    /// <summary>DoubleFree: where the block was allocated.</summary>
    public StackFrame[]? AllocationFrames { get; set; }

    public string Engine { get; set; } = "";
}
