using LeakTools.Core.Symbols.Dwarf;

namespace LeakTools.Core.Symbols;

/// <summary>Symbolizes file virtual addresses of one ELF module: function names from DWARF and
/// the ELF symbol tables (module, separate debug file, MiniDebugInfo, PLT stubs), source lines
/// from .debug_line, inline chains from .debug_info. Results are cached per address, so the
/// warm path is one dictionary lookup; cold lookups build only the index of the unit they touch.
/// Thread-safe. Get one from <see cref="SymbolCache"/>.</summary>
public sealed class ModuleSymbolizer : IDisposable
{
    private const int MaxCachedAddresses = 1 << 20;
    private readonly ElfFile _file;
    private readonly ElfFile? _debugFile;
    private readonly ElfFile? _miniDebugInfo;
    private readonly DwarfInfo? _dwarf;
    private readonly FunctionSymbolIndex _functions;
    private readonly Dictionary<ulong, SymbolizedAddress> _cache = new();
    private readonly List<int> _chain = new();
    private readonly object _lock = new();
    private readonly bool _dwarfEmbedded;
    private readonly string? _loadProblem;

    internal ModuleSymbolizer(ElfFile file, string path, ElfFile? debugFile, DebugInfoSource source, ElfFile? miniDebugInfo)
    {
        _file = file;
        Path = path;
        _debugFile = debugFile;
        _miniDebugInfo = miniDebugInfo;
        DebugSource = source;
        ElfFile? dwarfFile = file.HasDwarf ? file : debugFile?.HasDwarf == true ? debugFile : null;
        _dwarfEmbedded = dwarfFile == file;
        if (dwarfFile is not null)
        {
            try
            {
                _dwarf = new DwarfInfo(DwarfSections.From(dwarfFile));
            }
            catch (Exception ex) when (ex is BadFormatException or LeakToolsException)
            {
                // Debug sections that do not decompress or parse: symbols only, said in Problems.
                _dwarf = null;
                _loadProblem = ex.Message;
            }
        }
        _functions = new FunctionSymbolIndex(AllSymbols(includeUndefined: false));
    }

    /// <summary>The module's path (as the caller named it: a maps path, a file given to -Path).</summary>
    public string Path { get; }

    public string? BuildId => _file.BuildId;

    /// <summary>Where the DWARF came from.</summary>
    public DebugInfoSource DebugSource { get; }

    /// <summary>Path of the separate debug file in use, or null.</summary>
    public string? DebugFile => _debugFile?.Path;

    /// <summary>True when the module has MiniDebugInfo (.gnu_debugdata) that was read.</summary>
    public bool HasMiniDebugInfo => _miniDebugInfo is not null;

    public bool HasLineInfo => _dwarf is not null;

    /// <summary>Number of function symbols in the lookup index.</summary>
    public int FunctionSymbolCount => _functions.Count;

    internal ElfFile File => _file;

    internal DwarfInfo? Dwarf => _dwarf;

    /// <summary>Problems met in corrupt DWARF units (those units answer without lines).</summary>
    public IReadOnlyList<string> Problems
    {
        get
        {
            lock (_lock)
            {
                if (_loadProblem is not null) return new[] { _loadProblem };
                return _dwarf?.Problems.ToArray() ?? Array.Empty<string>();
            }
        }
    }

    /// <summary>Converts a file offset (from a mapping) to this module's virtual address.</summary>
    public bool TryFileOffsetToAddress(ulong fileOffset, out ulong address) => _file.TryFileOffsetToAddress(fileOffset, out address);

    /// <summary>Every symbol: the module's own .symtab/.dynsym/PLT stubs, then the .symtab of the
    /// separate debug file and of the MiniDebugInfo.</summary>
    public List<ElfSymbol> AllSymbols(bool includeUndefined = true)
    {
        var list = ElfSymbolReader.Read(_file);
        if (_debugFile is not null) list.AddRange(ElfSymbolReader.Read(_debugFile, dynsym: false, plt: false, table: ".symtab (" + System.IO.Path.GetFileName(_debugFile.Path) + ")"));
        if (_miniDebugInfo is not null) list.AddRange(ElfSymbolReader.Read(_miniDebugInfo, dynsym: false, plt: false, table: ".gnu_debugdata"));
        // Function index order: module .symtab, debug .symtab, MiniDebugInfo, .dynsym, PLT.
        list = list.OrderBy(Rank).ToList(); // stable: table order within each table
        if (!includeUndefined) list.RemoveAll(s => !s.IsDefined);
        foreach (ElfSymbol s in list) s.Module = Path;
        return list;
    }

    private static int Rank(ElfSymbol s) => s.Table switch
    {
        ".symtab" => 0,
        ".dynsym" => 3,
        ".plt" => 4,
        ".gnu_debugdata" => 2,
        _ => 1,
    };

    /// <summary>Resolves a file virtual address (what <c>addr2line -e</c> takes). Cached.</summary>
    public SymbolizedAddress Resolve(ulong address)
    {
        lock (_lock)
        {
            if (_cache.TryGetValue(address, out SymbolizedAddress? hit)) return hit;
            SymbolizedAddress result = ResolveUncached(address);
            if (_cache.Count >= MaxCachedAddresses) _cache.Clear();
            _cache[address] = result;
            return result;
        }
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private SymbolizedAddress ResolveUncached(ulong address)
    {
        int sym = _functions.Find(address);
        string? file = null;
        int line = 0, column = 0;
        UnitIndex index = UnitIndex.Empty;
        int unit = -1;
        bool found = false;
        if (_dwarf is not null)
        {
            try
            {
                found = _dwarf.Lookup(address, _chain, out index, out unit, out file, out line, out column);
            }
            catch (BadFormatException ex)
            {
                _dwarf.Problems.Add($"0x{address:x}: {ex.Message}");
                _chain.Clear();
                found = false;
            }
        }
        int? lineOrNull = found && file is not null ? line : null;
        int? columnOrNull = found && file is not null && column > 0 ? column : null;
        if (!found || _chain.Count == 0)
        {
            var only = new SymbolFrame(
                sym >= 0 ? _functions.DemangledName(sym) : null,
                sym >= 0 ? _functions.Start(sym) : null,
                found ? file : null, lineOrNull, columnOrNull, false);
            return new SymbolizedAddress(address, new[] { only });
        }

        var frames = new SymbolFrame[_chain.Count];
        for (int k = 0; k < _chain.Count; k++)
        {
            FunctionEntry e = index.Entries[_chain[k]];
            string? name;
            try
            {
                name = _dwarf!.NameOf(e, unit);
            }
            catch (BadFormatException)
            {
                name = null;
            }
            ulong start = index.RangeLowOf(_chain[k], address);
            if (!e.IsInlined)
            {
                if (sym >= 0)
                {
                    // binutils: a DWARF name without linkage name gives way to the ELF symbol of the
                    // same file that starts where the function does (foo.constprop.0, aliases).
                    // With a separate debug file it keeps the DWARF name.
                    if ((_dwarfEmbedded && !e.NameIsLinkage && _functions.Start(sym) == e.FirstLow) || name is null) name = _functions.DemangledName(sym);
                    start = _functions.Start(sym); // the symbol covers the address (foo, or its foo.cold part)
                }
            }
            string? f;
            int? l, c;
            if (k == 0)
            {
                f = file;
                l = lineOrNull;
                c = columnOrNull;
            }
            else
            {
                FunctionEntry inner = index.Entries[_chain[k - 1]];
                f = _dwarf!.CallFileName(index, inner);
                l = inner.CallLine > 0 ? inner.CallLine : null;
                c = inner.CallColumn > 0 ? inner.CallColumn : null;
            }
            frames[k] = new SymbolFrame(name, start, f, l, c, e.IsInlined);
        }
        return new SymbolizedAddress(address, frames);
    }

    /// <summary>Builds every unit's index now (benchmarks, memory figures).</summary>
    public void LoadAll()
    {
        lock (_lock) _dwarf?.IndexAll();
    }

    public void Dispose()
    {
        _file.Dispose();
        _debugFile?.Dispose();
        _miniDebugInfo?.Dispose();
    }
}
