namespace LeakTools;

/// <summary>One symbol of an ELF file, like a line of <c>nm -S</c> or <c>readelf -s</c>.</summary>
public sealed class ElfSymbol
{
    /// <summary>The symbol name as stored (mangled for C++); PLT stubs are named <c>name@plt</c>.</summary>
    public string Name { get; set; } = "";

    /// <summary>The demangled C++ name, or the name itself when it is not mangled.</summary>
    public string Demangled { get; set; } = "";

    /// <summary>The symbol's value: a virtual address of the file for defined symbols.</summary>
    public ulong Address { get; set; }

    /// <summary>Size in bytes (0 when the symbol has none).</summary>
    public long Size { get; set; }

    /// <summary>FUNC, OBJECT, NOTYPE, IFUNC, TLS, SECTION, FILE, COMMON or a number.</summary>
    public string Type { get; set; } = "";

    /// <summary>LOCAL, GLOBAL, WEAK, UNIQUE or a number.</summary>
    public string Binding { get; set; } = "";

    /// <summary>Section name, UND for undefined symbols, ABS, COM.</summary>
    public string Section { get; set; } = "";

    /// <summary>Where the symbol comes from: .symtab, .dynsym, .plt (synthesized PLT stubs), or
    /// the separate debug file / MiniDebugInfo (.gnu_debugdata) when the file itself is stripped.</summary>
    public string Table { get; set; } = "";

    /// <summary>Path of the ELF file.</summary>
    public string Module { get; set; } = "";

    public bool IsDefined => Section != "UND";

    public override string ToString() => $"{Address:x16} {Size,6} {Type,-6} {Binding,-6} {Name}";
}
