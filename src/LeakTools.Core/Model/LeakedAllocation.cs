namespace LeakTools;

/// <summary>How a block found in a core is lost.</summary>
public enum LeakedAllocationKind
{
    /// <summary>Unreachable from every root, but other leaked blocks point to it (a list node, a
    /// member of a leaked cycle): valgrind's "indirectly lost", or a cycle's members.</summary>
    Leaked,
    /// <summary>Unreachable, and no other leaked block points to it either: where a leaked
    /// structure starts (valgrind's "definitely lost", cycles aside).</summary>
    Unreferenced,
}

/// <summary>One heap block a core's process could no longer reach (Find-LeakedAllocation).
/// Sizes are usable bytes, what malloc_usable_size returns: the request rounded up to glibc's
/// chunk granularity.</summary>
public sealed class LeakedAllocation
{
    /// <summary>The block's address, as malloc returned it.</summary>
    public ulong Address { get; set; }

    /// <summary>Usable bytes (malloc_usable_size).</summary>
    public long Size { get; set; }

    public LeakedAllocationKind Kind { get; set; }

    /// <summary>"main" (main_arena), "0x7f5e24000030" (a thread arena's address), or "mmapped".</summary>
    public string Arena { get; set; } = "";

    /// <summary>The C++ type, when the block's first word points into a vtable; else null.</summary>
    public string? TypeName { get; set; }

    /// <summary>The first bytes of the block: hex, then the printable ones as text.</summary>
    public string Preview { get; set; } = "";

    /// <summary>How many other leaked blocks point into this one.</summary>
    public int ReferencedBy { get; set; }

    /// <summary>The code that allocated it: the first function of <see cref="Frames"/> outside the
    /// allocator, the C library and operator new (as Watch-Allocation's Function); null without Frames.</summary>
    public string? Function { get; set; }

    /// <summary>file:line of <see cref="Function"/>'s frame, when its module has line information.</summary>
    public string? Location { get; set; }

    /// <summary>Where it was allocated, innermost first (the allocator's entry, then each caller),
    /// when the in-process agent of Watch-Allocation -Engine Agent was tracking the process with a
    /// session active as the core was taken and had seen this block allocated; null otherwise.</summary>
    public StackFrame[]? Frames { get; set; }

    /// <summary>The chunk holding the block, header included.</summary>
    public long ChunkSize { get; set; }

    /// <summary>The process the core is of.</summary>
    public int? ProcessId { get; set; }

    /// <summary>The core file analyzed (null when -Id took a snapshot and removed it).</summary>
    public string? Core { get; set; }

    public override string ToString() => $"0x{Address:x} {Size} {Kind}";
}
