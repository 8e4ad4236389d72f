namespace LeakTools;

/// <summary>One frame of a call stack, the frame type every LeakTools cmdlet shares (symbolizer,
/// tracer, cores, valgrind reports). One address can yield several frames: an inline chain,
/// innermost first, all with the same <see cref="Address"/> and <see cref="IsInline"/> set on all
/// but the last (the real, non-inlined function).</summary>
public sealed class StackFrame
{
    /// <summary>The address looked up: a runtime address in a process, or a file's virtual address.</summary>
    public ulong Address { get; set; }

    /// <summary>Path of the ELF module holding the address; empty when no module covers it.</summary>
    public string Module { get; set; } = "";

    /// <summary>The address as a virtual address of the module's ELF file (what addr2line -e takes).</summary>
    public ulong ModuleOffset { get; set; }

    /// <summary>Function name (demangled for C++), or null when no symbol covers the address.</summary>
    public string? Function { get; set; }

    /// <summary>Distance from the start of <see cref="Function"/>.</summary>
    public ulong Offset { get; set; }

    /// <summary>Source file, or null when there is no line information.</summary>
    public string? File { get; set; }

    public int? Line { get; set; }

    public int? Column { get; set; }

    /// <summary>True for frames of code inlined into the next frame of the same address.</summary>
    public bool IsInline { get; set; }

    /// <summary>Base name of <see cref="Module"/>.</summary>
    public string ModuleName => Module.Length == 0 ? "" : System.IO.Path.GetFileName(Module);

    /// <summary>"libc.so.6!malloc+0x1f  malloc.c:3287" — module!function+offset, then file:line.</summary>
    public override string ToString()
    {
        string where = Function is null ? $"0x{(Module.Length == 0 ? Address : ModuleOffset):x}" : $"{Function}+0x{Offset:x}";
        string text = ModuleName.Length == 0 ? where : $"{ModuleName}!{where}";
        if (File is not null) text += Line is null ? $"  {File}" : $"  {File}:{Line}";
        return text;
    }
}
