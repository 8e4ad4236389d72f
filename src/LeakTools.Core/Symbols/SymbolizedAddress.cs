namespace LeakTools.Core.Symbols;

/// <summary>One frame of a symbolized address: the function (demangled), where it starts, and
/// the source position. For the innermost frame the position is the address's own line; for the
/// frames around an inlined call it is the call site, as <c>addr2line -i</c> prints them.</summary>
public readonly record struct SymbolFrame(string? Function, ulong? FunctionStart, string? File, int? Line, int? Column, bool IsInline);

/// <summary>What one file virtual address of a module resolves to: one frame per level of
/// inlining, innermost first, never empty (a frame without function or line when nothing is known).
/// Immutable and shared by the cache: callers must not modify it.</summary>
public sealed class SymbolizedAddress
{
    internal SymbolizedAddress(ulong address, SymbolFrame[] frames)
    {
        Address = address;
        Frames = frames;
    }

    /// <summary>The file virtual address that was looked up.</summary>
    public ulong Address { get; }

    /// <summary>Innermost first; the last one is the real (non-inlined) function.</summary>
    public IReadOnlyList<SymbolFrame> Frames { get; }

    public bool HasFunction => Frames[0].Function is not null;

    public bool HasLine => Frames[0].Line is not null;

    /// <summary>Appends one <see cref="LeakTools.StackFrame"/> per frame to <paramref name="output"/>.
    /// <paramref name="address"/> is what the caller looked up (a runtime address, or the file
    /// address itself); <paramref name="moduleOffset"/> is the file virtual address reported,
    /// and <paramref name="offsetBase"/> the address the function offsets are measured from.</summary>
    public void AppendFrames(List<StackFrame> output, ulong address, string module, ulong moduleOffset, ulong offsetBase)
    {
        foreach (SymbolFrame f in Frames)
        {
            output.Add(new StackFrame
            {
                Address = address,
                Module = module,
                ModuleOffset = moduleOffset,
                Function = f.Function,
                Offset = f.FunctionStart is ulong start && offsetBase >= start ? offsetBase - start : 0,
                File = f.File,
                Line = f.Line,
                Column = f.Column,
                IsInline = f.IsInline,
            });
        }
    }
}
