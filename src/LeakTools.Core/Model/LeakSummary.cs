namespace LeakTools;

/// <summary>The figures at the end of a valgrind memcheck report: HEAP SUMMARY, LEAK SUMMARY and
/// ERROR SUMMARY. A figure the report does not give is null, never a made-up 0 (valgrind's XML has
/// no LEAK SUMMARY: the figures are summed from the loss records, which needs every leak kind shown).</summary>
public sealed class LeakSummary
{
    /// <summary>Process id of the valgrind run.</summary>
    public int? ProcessId { get; set; }

    /// <summary>The program and its arguments, as valgrind's "Command:" line gives them.</summary>
    public string? Command { get; set; }

    /// <summary>Valgrind tool (memcheck).</summary>
    public string? Tool { get; set; }

    /// <summary>"in use at exit: 853,777 bytes in 11,106 blocks": 853777.</summary>
    public long? InUseBytes { get; set; }

    public long? InUseBlocks { get; set; }

    /// <summary>"total heap usage: 21,779 allocs, 10,673 frees, 28,226,706 bytes allocated".</summary>
    public long? Allocs { get; set; }

    /// <summary>Frees of the heap usage line. From a text log: every free call, invalid ones too;
    /// from Invoke-Valgrind (valgrind's xtree): the blocks actually freed.</summary>
    public long? Frees { get; set; }

    public long? BytesAllocated { get; set; }

    /// <summary>Bytes definitely lost: direct bytes only, as valgrind's LEAK SUMMARY counts them.</summary>
    public long? DefinitelyLost { get; set; }

    public long? DefinitelyLostBlocks { get; set; }

    public long? IndirectlyLost { get; set; }

    public long? IndirectlyLostBlocks { get; set; }

    public long? PossiblyLost { get; set; }

    public long? PossiblyLostBlocks { get; set; }

    public long? StillReachable { get; set; }

    public long? StillReachableBlocks { get; set; }

    /// <summary>Leaked bytes matched by a suppression.</summary>
    public long? Suppressed { get; set; }

    public long? SuppressedBlocks { get; set; }

    /// <summary>"ERROR SUMMARY: 2 errors from 2 contexts (suppressed: 0 from 0)": 2.</summary>
    public long? Errors { get; set; }

    public long? ErrorContexts { get; set; }

    public long? SuppressedErrors { get; set; }

    public long? SuppressedContexts { get; set; }

    /// <summary>Suppressions that matched, by name, with how often.</summary>
    public NamedValues Suppressions { get; set; } = new(Array.Empty<KeyValuePair<string, long>>());

    /// <summary>Name of the signal that ended the program (SIGSEGV, SIGINT), when one did.</summary>
    public string? Signal { get; set; }

    /// <summary>Exit code of valgrind (the program's own unless --error-exitcode); Invoke-Valgrind only.</summary>
    public int? ExitCode { get; set; }

    /// <summary>How long the program ran under valgrind (from the XML status).</summary>
    public TimeSpan? Elapsed { get; set; }

    /// <summary>False when the report was cut off (a truncated XML, valgrind killed): the figures cover what was read.</summary>
    public bool Complete { get; set; } = true;

    /// <summary>The report file; null when Invoke-Valgrind kept no log.</summary>
    public string? Path { get; set; }

    public override string ToString() =>
        $"definitely lost: {DefinitelyLost?.ToString("N0") ?? "?"} bytes in {DefinitelyLostBlocks?.ToString("N0") ?? "?"} blocks; " +
        $"ERROR SUMMARY: {Errors?.ToString("N0") ?? "?"} errors from {ErrorContexts?.ToString("N0") ?? "?"} contexts";
}
