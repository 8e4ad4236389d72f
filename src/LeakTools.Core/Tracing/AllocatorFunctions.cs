using LeakTools.Core.ProcFs;
using LeakTools.Core.Symbols;

namespace LeakTools.Core.Tracing;

/// <summary>What an allocator entry point does, for the tracer's bookkeeping.</summary>
public enum AllocatorKind
{
    /// <summary>malloc(size), valloc(size), pvalloc(size): the result is a block of arg0 bytes.</summary>
    Malloc,
    /// <summary>calloc(nmemb, size).</summary>
    Calloc,
    /// <summary>memalign(align, size), aligned_alloc(align, size).</summary>
    Memalign,
    /// <summary>posix_memalign(&amp;ptr, align, size): 0 and *ptr on success.</summary>
    PosixMemalign,
    /// <summary>realloc(ptr, size).</summary>
    Realloc,
    /// <summary>reallocarray(ptr, nmemb, size).</summary>
    ReallocArray,
    /// <summary>free(ptr).</summary>
    Free,
}

/// <summary>One allocator entry point found in the target: its runtime address (load bias
/// applied from the ELF program headers, not assumed from file offset 0) and size.</summary>
public sealed record AllocatorFunction(string Name, AllocatorKind Kind, ulong Address, long Size, string Module);

/// <summary>Finds the allocator a process really uses and its entry points: -Module names win;
/// otherwise the main executable or a preloaded/linked library that defines malloc itself
/// (jemalloc, tcmalloc, mimalloc, a static binary), else the C library.</summary>
public static class AllocatorFunctions
{
    public static readonly (string Name, AllocatorKind Kind)[] Names =
    {
        ("malloc", AllocatorKind.Malloc), ("calloc", AllocatorKind.Calloc), ("realloc", AllocatorKind.Realloc),
        ("reallocarray", AllocatorKind.ReallocArray), ("free", AllocatorKind.Free), ("posix_memalign", AllocatorKind.PosixMemalign),
        ("aligned_alloc", AllocatorKind.Memalign), ("memalign", AllocatorKind.Memalign), ("valloc", AllocatorKind.Malloc),
        ("pvalloc", AllocatorKind.Malloc),
    };

    /// <summary>The allocator entry points of process <paramref name="pid"/>, one per distinct
    /// address (aliases such as aligned_alloc/memalign share one). Throws NoAllocatorSymbols,
    /// naming the modules searched, when none is found.</summary>
    public static List<AllocatorFunction> Find(int pid, IReadOnlyList<string>? modules, ProcRoot? root = null)
    {
        root ??= ProcRoot.Default;
        string mapsPath = root.File(pid, "maps");
        int errno = ProcFile.TryRead(mapsPath, out ReadOnlySpan<byte> text);
        if (errno != 0) throw ProcErrors.FromErrno(errno, pid, mapsPath);
        List<ModuleMapping> maps = ProcessSymbolizer.ParseMaps(System.Text.Encoding.UTF8.GetString(text), root, pid);
        string? exe = ProcFields.Link(root.File(pid, "exe"));
        if (exe is not null && exe.EndsWith(" (deleted)", StringComparison.Ordinal)) exe = exe[..^10];

        // Module paths in the order the dynamic linker searches them (its link map: the executable,
        // LD_PRELOAD libraries, then the needed ones breadth first; dlopen'ed ones last), so a
        // preloaded jemalloc wins over libc as it does for the program. Unlisted modules follow.
        var paths = maps.Where(m => m.Path.StartsWith('/')).Select(m => m.Path).Distinct().ToList();
        List<string> linkMap = LinkMapOrder(pid, maps, root);
        int Rank(string path)
        {
            if (path == exe) return -1;
            int i = linkMap.FindIndex(l => l == path || Path.GetFileName(l) == Path.GetFileName(path));
            return i < 0 ? int.MaxValue : i;
        }
        paths = paths.Select((p, i) => (p, i)).OrderBy(x => Rank(x.p)).ThenBy(x => x.i).Select(x => x.p).ToList();

        List<string> candidates;
        bool explicitModules = modules is { Count: > 0 };
        if (explicitModules)
        {
            candidates = new List<string>();
            foreach (string wanted in modules!)
            {
                var match = paths.Where(p => p == wanted || Path.GetFileName(p) == wanted || Path.GetFileName(p).StartsWith(wanted + ".so", StringComparison.Ordinal)
                                             || Path.GetFileName(p).StartsWith(wanted, StringComparison.Ordinal)).ToList();
                if (match.Count == 0)
                {
                    throw new LeakToolsException(FailureKind.NotFound, "AllocatorModuleNotFound",
                        $"Process {pid} has no module matching '{wanted}' mapped. Its modules: {string.Join(", ", paths.Select(Path.GetFileName))}.", pid);
                }
                candidates.AddRange(match);
            }
        }
        else
        {
            candidates = paths.Where(p => !IsDynamicLoader(p)).ToList();
        }

        var searched = new List<string>();
        foreach (string path in candidates)
        {
            searched.Add(path);
            List<AllocatorFunction> found = FromModule(pid, path, maps, root);
            bool definesMalloc = found.Any(f => f.Kind == AllocatorKind.Malloc && f.Name == "malloc");
            if (explicitModules && found.Count > 0) return found;
            if (definesMalloc) return found;
        }
        throw new LeakToolsException(FailureKind.NotFound, "NoAllocatorSymbols",
            $"No allocator entry points (malloc, free, ...) were found in process {pid}. Modules searched: " +
            $"{(searched.Count == 0 ? "none" : string.Join(", ", searched))}. A stripped static binary has no symbols to find; " +
            "name the module that holds the allocator with -Module.", pid);
    }

    /// <summary>True for a frame that is not "the code that allocated": in the C library, the
    /// dynamic loader or an allocator library; or, where the allocator is linked into the
    /// executable (a static binary), in one of the allocator's own functions.</summary>
    /// <param name="executable">The traced program's executable (/proc/PID/exe), null if unknown.</param>
    public static bool IsRuntimeFrame(StackFrame frame, string? allocatorModule, string? executable)
    {
        string module = frame.Module;
        if (module.Length == 0) return false;
        string name = Path.GetFileName(module);
        if (name.StartsWith("libc.so", StringComparison.Ordinal) || name.StartsWith("libc-", StringComparison.Ordinal) || IsDynamicLoader(module)) return true;
        if (module != allocatorModule) return false;
        if (executable is null || (executable != module && executable != module + " (deleted)")) return true; // an allocator library
        string fn = frame.Function ?? "";
        return fn.StartsWith("_int_", StringComparison.Ordinal) || fn == "_mid_memalign"
               || Names.Any(n => fn == n.Name || fn == "__" + n.Name || fn == "__libc_" + n.Name || fn == "__GI___libc_" + n.Name);
    }

    /// <summary>The names in the dynamic loader's link map (r_debug.r_map, from ld.so's exported
    /// _r_debug), in order; empty for a static binary or when it cannot be read.</summary>
    public static List<string> LinkMapOrder(int pid, List<ModuleMapping> maps, ProcRoot root)
    {
        var names = new List<string>();
        string? loader = maps.Select(m => m.Path).FirstOrDefault(p => p.StartsWith('/') && IsDynamicLoader(p));
        if (loader is null) return names;
        ulong? rDebug = null;
        try
        {
            ModuleMapping first = maps.First(m => m.Path == loader);
            using ElfFile elf = ElfFile.Open(first.OpenPath ?? loader, loader);
            ElfSymbol? sym = ElfSymbolReader.Read(elf, symtab: false, plt: false).FirstOrDefault(x => x.Name.StartsWith("_r_debug", StringComparison.Ordinal) && x.IsDefined && x.Type == "OBJECT");
            if (sym is not null) rDebug = RuntimeAddress(elf, sym.Address, maps.Where(m => m.Path == loader));
        }
        catch (LeakToolsException) { return names; }
        if (rDebug is not ulong at) return names;
        var word = new byte[8];
        ulong Read(ulong address) => ProcessMemoryAccess.Read(pid, address, word) == 8 ? BitConverter.ToUInt64(word) : 0;
        ulong map = Read(at + 8); // struct r_debug { int r_version; struct link_map *r_map; ... }
        var name = new byte[512];
        for (int guard = 0; map != 0 && guard < 4096; guard++)
        {
            // struct link_map { l_addr; char *l_name; l_ld; l_next; l_prev; }
            ulong namePointer = Read(map + 8);
            int n = namePointer == 0 ? 0 : ProcessMemoryAccess.Read(pid, namePointer, name);
            int end = Array.IndexOf(name, (byte)0, 0, Math.Max(n, 0));
            names.Add(end > 0 ? System.Text.Encoding.UTF8.GetString(name, 0, end) : "");
            map = Read(map + 24);
        }
        return names;
    }

    public static bool IsDynamicLoader(string path) => Path.GetFileName(path).StartsWith("ld-linux", StringComparison.Ordinal) || Path.GetFileName(path).StartsWith("ld.so", StringComparison.Ordinal);

    /// <summary>The allocator functions a module defines, at their runtime addresses.</summary>
    public static List<AllocatorFunction> FromModule(int pid, string path, List<ModuleMapping> maps, ProcRoot root)
    {
        var result = new List<AllocatorFunction>();
        ModuleMapping[] mine = maps.Where(m => m.Path == path).ToArray();
        if (mine.Length == 0) return result;
        ElfFile elf;
        try { elf = ElfFile.Open(mine[0].OpenPath ?? path, path); }
        catch (LeakToolsException) { return result; }
        using (elf)
        {
            List<ElfSymbol> symbols;
            try { symbols = ElfSymbolReader.Read(elf, plt: false); }
            catch (LeakToolsException) { return result; }
            var byName = new Dictionary<string, ElfSymbol>(StringComparer.Ordinal);
            foreach (ElfSymbol s in symbols)
            {
                if (!s.IsDefined || s.Type is not ("FUNC" or "IFUNC") || s.Address == 0) continue;
                string name = s.Name;
                int at = name.IndexOf('@');
                if (at > 0) name = name[..at];
                if (!byName.TryGetValue(name, out ElfSymbol? known) || (known.Binding == "LOCAL" && s.Binding != "LOCAL")) byName[name] = s;
            }
            var seen = new HashSet<ulong>();
            foreach (var (name, kind) in Names)
            {
                if (!byName.TryGetValue(name, out ElfSymbol? sym) || sym.Type == "IFUNC") continue;
                ulong? runtime = RuntimeAddress(elf, sym.Address, mine);
                if (runtime is not ulong address || !seen.Add(address)) continue;
                result.Add(new AllocatorFunction(name, kind, address, sym.Size, path));
            }
        }
        return result;
    }

    /// <summary>File virtual address -> runtime address, through the PT_LOAD segment holding it
    /// and the mapping of that file offset.</summary>
    public static ulong? RuntimeAddress(ElfFile elf, ulong virtualAddress, IEnumerable<ModuleMapping> mappings)
    {
        foreach (ElfSegment seg in elf.Segments)
        {
            if (seg.Type != ElfSegment.PT_LOAD || virtualAddress < seg.VirtualAddress || virtualAddress - seg.VirtualAddress >= seg.MemorySize) continue;
            if (virtualAddress - seg.VirtualAddress >= seg.FileSize)
            {
                // .bss: no file bytes; the module's load bias (from any of its mappings) places it.
                foreach (ModuleMapping m in mappings)
                {
                    if (elf.TryFileOffsetToAddress(m.FileOffset, out ulong mappedAddress)) return virtualAddress + (m.Start - mappedAddress);
                }
                return null;
            }
            ulong fileOffset = seg.Offset + (virtualAddress - seg.VirtualAddress);
            foreach (ModuleMapping m in mappings)
            {
                if (fileOffset >= m.FileOffset && fileOffset - m.FileOffset < m.End - m.Start) return m.Start + (fileOffset - m.FileOffset);
            }
        }
        return null;
    }
}
