namespace LeakTools.Core.Reports;

/// <summary>What one valgrind run reported: its findings, in report order, and its summary.</summary>
public sealed class ValgrindReport
{
    public List<LeakRecord> Records { get; } = new();

    public LeakSummary Summary { get; } = new();

    /// <summary>Problems with the report itself (cut off, unknown kinds), for the cmdlet to warn about.</summary>
    public List<string> Warnings { get; } = new();

    /// <summary>How many of the summary's Errors are loss records (--errors-for-leak-kinds).</summary>
    internal long LeakErrors { get; set; }

    /// <summary>Drops the leak check from the report (-LeakCheck No): loss records, leak figures and the errors they counted.</summary>
    internal void WithoutLeaks()
    {
        Records.RemoveAll(r => ValgrindKinds.IsLeak(r.Kind));
        var s = Summary;
        if (s.Errors is not null) (s.Errors, s.ErrorContexts) = (s.Errors - LeakErrors, s.ErrorContexts - LeakErrors);
        LeakErrors = 0;
        (s.DefinitelyLost, s.DefinitelyLostBlocks, s.IndirectlyLost, s.IndirectlyLostBlocks) = (null, null, null, null);
        (s.PossiblyLost, s.PossiblyLostBlocks, s.StillReachable, s.StillReachableBlocks, s.Suppressed, s.SuppressedBlocks) = (null, null, null, null, null, null);
    }

    /// <summary>Completes every frame and record once parsing is done: inline flags, ModuleOffset
    /// from <paramref name="loads"/>, the record's own Function/File/Line, process id and path.</summary>
    internal void Complete(ModuleLoadMap loads, string? path)
    {
        Summary.Path = path;
        var stacks = Records.Select(r => r.Frames).Concat(Records.SelectMany(r => r.Auxiliary.Select(d => d.Frames))).ToList();
        foreach (StackFrame[] frames in stacks)
        {
            // valgrind prints an inline chain as frames sharing one ip, the real function last
            for (int i = 0; i < frames.Length; i++) frames[i].IsInline = i + 1 < frames.Length && frames[i + 1].Address == frames[i].Address;
        }
        loads.LearnFromNamedFrames(stacks.SelectMany(f => f));
        foreach (StackFrame f in stacks.SelectMany(f => f))
        {
            if (f.ModuleOffset == 0 && loads.FileAddress(f.Module, f.Address) is ulong fileAddress) f.ModuleOffset = fileAddress;
        }
        foreach (LeakRecord r in Records)
        {
            r.Path = path;
            r.ProcessId ??= Summary.ProcessId;
            StackFrame? where = r.Frames.FirstOrDefault(f => !IsValgrindReplacement(f)) ?? r.Frames.FirstOrDefault();
            if (where is not null)
            {
                r.Function = where.Function;
                r.File = where.File;
                r.Line = where.Line;
            }
        }
    }

    /// <summary>valgrind's replacement malloc/free/new (vgpreload_memcheck, vg_replace_malloc.c).</summary>
    internal static bool IsValgrindReplacement(StackFrame f) =>
        f.Module.Contains("/vgpreload_", StringComparison.Ordinal) ||
        (f.File is not null && System.IO.Path.GetFileName(f.File).StartsWith("vg_replace_", StringComparison.Ordinal));
}
