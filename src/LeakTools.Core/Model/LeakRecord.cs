namespace LeakTools;

/// <summary>What a valgrind (memcheck) finding is about: the four leak kinds of a loss record, the
/// error kinds of memcheck's XML &lt;kind&gt;, and the signal that ended the program.</summary>
public enum LeakKind
{
    /// <summary>A kind this version of LeakTools does not know; <see cref="LeakRecord.ValgrindKind"/> has valgrind's name.</summary>
    Unknown = 0,
    DefinitelyLost,
    IndirectlyLost,
    PossiblyLost,
    StillReachable,
    InvalidRead,
    InvalidWrite,
    InvalidFree,
    MismatchedFree,
    InvalidJump,
    UninitCondition,
    UninitValue,
    SyscallParam,
    Overlap,
    InvalidMemPool,
    ClientCheck,
    FishyValue,
    ReallocSizeZero,
    CoreMemError,
    /// <summary>"Process terminating with default action of signal N": where the program died.</summary>
    FatalSignal,
}

/// <summary>One finding of a valgrind memcheck report: a loss record ("512 bytes in 1 blocks are
/// definitely lost in loss record 1 of 1") or an error ("Invalid free() / delete / delete[] /
/// realloc()"), with its stack as <see cref="StackFrame"/>s, innermost first.</summary>
public sealed class LeakRecord
{
    public LeakKind Kind { get; set; }

    /// <summary>Valgrind's own name of the kind, as in its XML (Leak_DefinitelyLost, InvalidFree...).</summary>
    public string? ValgrindKind { get; set; }

    /// <summary>Valgrind's heading line, e.g. "Invalid read of size 4".</summary>
    public string Message { get; set; } = "";

    /// <summary>Leaked bytes of a loss record, direct and indirect together (valgrind's first
    /// figure); null for errors.</summary>
    public long? Bytes { get; set; }

    /// <summary>The part of <see cref="Bytes"/> held only through the lost blocks ("80 (16 direct,
    /// 64 indirect) bytes"): 0 when valgrind names none, null for errors.</summary>
    public long? IndirectBytes { get; set; }

    /// <summary>Blocks of a loss record; null for errors.</summary>
    public long? Blocks { get; set; }

    /// <summary>"loss record 2,251 of 3,462": 2251.</summary>
    public int? LossRecord { get; set; }

    /// <summary>"loss record 2,251 of 3,462": 3462.</summary>
    public int? LossRecordCount { get; set; }

    /// <summary>How often valgrind saw this error (XML errorcounts, or the -s list of a text log); null when the report does not say.</summary>
    public long? Count { get; set; }

    /// <summary>Valgrind's thread number of the thread that hit the error (1 is the main thread); null for loss records.</summary>
    public int? ThreadId { get; set; }

    /// <summary>The thread's name (prctl/pthread_setname_np), when valgrind reports one.</summary>
    public string? ThreadName { get; set; }

    /// <summary>Where it happened (errors) or where the blocks were allocated (loss records), innermost first.
    /// Frames whose Function is null were "???" in the report; Module and ModuleOffset say where to resolve them.</summary>
    public StackFrame[] Frames { get; set; } = Array.Empty<StackFrame>();

    /// <summary>Valgrind's further lines: "Address 0x... is 0 bytes inside a block of size 512 free'd"
    /// with the stack that freed it, "Block was alloc'd at" with its stack, origins of uninitialised values.</summary>
    public LeakRecordDetail[] Auxiliary { get; set; } = Array.Empty<LeakRecordDetail>();

    /// <summary>The first frame outside valgrind's own replacement functions (malloc, free,
    /// operator new...): the program's line that allocated, freed or accessed.</summary>
    public string? Function { get; set; }

    /// <summary>Source file of that frame (as valgrind gives it: a full path from XML, a base name from text).</summary>
    public string? File { get; set; }

    /// <summary>Source line of that frame.</summary>
    public int? Line { get; set; }

    /// <summary>The suppression valgrind generated for this finding (--gen-suppressions), ready for a .supp file.</summary>
    public string? Suppression { get; set; }

    /// <summary>Process id of the valgrind run (the ==PID== of its log).</summary>
    public int? ProcessId { get; set; }

    /// <summary>The report file it came from; null when Invoke-Valgrind kept no log.</summary>
    public string? Path { get; set; }

    /// <summary>Valgrind's own heading, e.g. "DefinitelyLost: 512 bytes in 1 blocks are definitely lost ... at main (memory.c:11)".</summary>
    public override string ToString()
    {
        string where = Function is null ? "" : File is null ? $" at {Function}" : $" at {Function} ({System.IO.Path.GetFileName(File)}:{Line})";
        return $"{Kind}: {Message}{where}";
    }
}

/// <summary>One auxiliary part of a valgrind finding: its line of text and the stack that follows it, if any.</summary>
public sealed class LeakRecordDetail
{
    public string Text { get; set; } = "";

    public StackFrame[] Frames { get; set; } = Array.Empty<StackFrame>();

    public override string ToString() => Text;
}
