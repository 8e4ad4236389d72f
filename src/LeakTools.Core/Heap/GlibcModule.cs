using System.Buffers.Binary;
using System.Text;
using System.Text.RegularExpressions;
using LeakTools.Core.Dumps;
using LeakTools.Core.Symbols;

namespace LeakTools.Core.Heap;

/// <summary>The glibc a core ran with: which file, its release and malloc layout, where it was
/// loaded, and the malloc globals its debug symbols name (main_arena, mp_, the tcache TLS variable,
/// tcache_key). Also decides whether malloc was glibc's at all: a process whose malloc comes from
/// jemalloc, tcmalloc, mimalloc, musl or the executable itself is reported as such, never guessed at.</summary>
internal sealed partial class GlibcModule
{
    private const uint R_X86_64_TPOFF64 = 18;

    private GlibcModule(string path, GlibcLayout layout, ulong bias)
    {
        Path = path;
        Layout = layout;
        Bias = bias;
    }

    /// <summary>libc's path as the core names it.</summary>
    public string Path { get; }

    public GlibcLayout Layout { get; }

    /// <summary>Load bias: runtime address = file virtual address + Bias.</summary>
    public ulong Bias { get; }

    /// <summary>Where main_arena is, when libc's symbols say so (else the heap walker scans for it).</summary>
    public ulong? MainArena { get; private set; }

    /// <summary>Where mp_ is (symbols only).</summary>
    public ulong? MallocParameters { get; private set; }

    /// <summary>tcache_key's address (2.34+, symbols only).</summary>
    public ulong? TcacheKeyAddress { get; private set; }

    /// <summary>The `tcache` TLS variable's offset from the thread pointer, read from libc's GOT in
    /// the core (the R_X86_64_TPOFF64 slot ld.so filled in), when its symbol is known.</summary>
    public long? TcacheThreadOffset { get; private set; }

    /// <summary>Every initial-exec TLS offset libc's GOT holds: candidates for the tcache variable
    /// when the symbols are missing.</summary>
    public List<long> ThreadOffsets { get; } = new();

    /// <summary>Where libc's symbols came from (for -Verbose), e.g. "/usr/lib/debug/.build-id/93/....debug".</summary>
    public string SymbolSource { get; private set; } = "none";

    /// <summary>Finds glibc in the core's file mappings and reads what the heap walk needs.
    /// Throws <see cref="LeakToolsException"/>: UnsupportedAllocator, NotGlibc,
    /// LibcUnreadable, LibcMismatch, UnknownLibcVersion, UnsupportedLibcVersion.</summary>
    public static GlibcModule Locate(CoreMemory memory, SymbolCache symbols, string? executable, List<string> warnings)
    {
        CoreFile core = memory.Core;
        var byPath = core.Files.GroupBy(f => f.Path).ToDictionary(g => g.Key, g => g.OrderBy(f => f.Start).ToList());
        string? libcName = byPath.Keys.FirstOrDefault(p => IsGlibcName(FileName(p)));
        // musl: its loader is its libc (/lib/ld-musl-x86_64.so.1 -> /usr/lib/x86_64-linux-musl/libc.so, or Alpine's libc.musl-x86_64.so.1).
        string? musl = byPath.Keys.FirstOrDefault(p => FileName(p).StartsWith("ld-musl-", StringComparison.Ordinal) ||
            FileName(p).StartsWith("libc.musl-", StringComparison.Ordinal) || (p.Contains("musl", StringComparison.Ordinal) && FileName(p) == "libc.so"));
        if (musl is not null)
            throw new LeakToolsException(FailureKind.NotSupported, "NotGlibc", $"The process ran with musl libc ({musl}): its allocator is not glibc's malloc, which is the only one Find-LeakedAllocation reads.", core.Path);
        // Code modules only (a mapping overlapping an executable segment): data files and devices are never opened.
        var code = byPath.Where(kv => kv.Value.Any(m => memory.Segments.Any(s => s.Executable && s.VirtualAddress < m.End && m.Start < s.End)))
            .Select(kv => kv.Key).Where(p => p != libcName && !IsLoader(FileName(p)) && !p.StartsWith("/dev/", StringComparison.Ordinal));
        CheckForeignMalloc(code, core.Executable, executable);
        if (libcName is null)
        {
            string what = byPath.Count <= 1
                ? "it is statically linked (no shared libc is mapped)"
                : "no glibc libc.so.6 is mapped";
            throw new LeakToolsException(FailureKind.NotSupported, "NotGlibc",
                $"Cannot find glibc in the core: {what}. Find-LeakedAllocation reads glibc's malloc of dynamically linked programs only; musl and static binaries are not supported.", core.Path);
        }

        string diskPath = StripDeleted(libcName, out bool deleted);
        List<CoreFileMapping> maps = byPath[libcName];
        ElfFile elf;
        try
        {
            elf = ElfFile.Open(diskPath);
        }
        catch (LeakToolsException ex)
        {
            string why = deleted ? "it was deleted or replaced after the process started" : ex.Message.TrimEnd('.');
            throw new LeakToolsException(ex.Kind == FailureKind.AccessDenied ? FailureKind.AccessDenied : FailureKind.NotFound, "LibcUnreadable",
                $"Cannot read the process's libc {libcName}: {why}. Its release and symbols are needed to read the heap.", diskPath, ex);
        }
        using (elf)
        {
            CoreFileMapping first = maps[0];
            if (!elf.TryFileOffsetToAddress(first.FileOffset, out ulong firstAddress))
                throw new LeakToolsException(FailureKind.InvalidData, "LibcMismatch", $"{diskPath} does not match the mapping of libc in the core.", diskPath);
            ulong bias = first.Start - firstAddress;

            string? coreBuildId = ReadBuildId(memory, maps.FirstOrDefault(m => m.FileOffset == 0)?.Start);
            if (coreBuildId is not null && elf.BuildId is not null && coreBuildId != elf.BuildId)
            {
                throw new LeakToolsException(FailureKind.InvalidData, "LibcMismatch",
                    $"{diskPath} on this machine (build-id {elf.BuildId}) is not the libc the process ran (build-id {coreBuildId}); " +
                    "analyze the core where it was made, or with the same glibc package installed.", diskPath);
            }
            if (deleted && coreBuildId is null)
                warnings.Add($"libc {libcName} was replaced after the process started and the core does not hold its build-id: {diskPath} is assumed to be the same file.");

            (int major, int minor) = ReadVersion(elf, diskPath);
            GlibcLayout layout = GlibcLayout.For(major, minor)
                ?? throw new LeakToolsException(FailureKind.NotSupported, "UnsupportedLibcVersion",
                    $"The process ran glibc {major}.{minor} ({diskPath}); Find-LeakedAllocation knows the malloc layouts of glibc 2.{GlibcLayout.MinMinor} to 2.{GlibcLayout.MaxMinor}.", diskPath);
            var module = new GlibcModule(libcName, layout, bias);
            module.ReadSymbols(memory, symbols, diskPath, elf, warnings);
            return module;
        }
    }

    private static string FileName(string path) => System.IO.Path.GetFileName(StripDeleted(path, out _));

    private static bool IsGlibcName(string name) => name == "libc.so.6" || GlibcFileName().IsMatch(name);

    private static bool IsLoader(string name) => name.StartsWith("ld-linux", StringComparison.Ordinal) || name.StartsWith("ld-2.", StringComparison.Ordinal) || name == "ld.so";

    [GeneratedRegex(@"^libc-2\.\d+\.so$")]
    private static partial Regex GlibcFileName();

    private static string StripDeleted(string path, out bool deleted)
    {
        deleted = path.EndsWith(" (deleted)", StringComparison.Ordinal);
        return deleted ? path[..^" (deleted)".Length] : path;
    }

    /// <summary>Another malloc in the process wins over glibc's: an allocator library (preloaded or
    /// linked), or an executable that defines malloc itself. Read from each module's .dynsym.</summary>
    private static void CheckForeignMalloc(IEnumerable<string> modules, string? coreExecutable, string? executableOverride)
    {
        var paths = modules.ToList();
        if (executableOverride is not null && coreExecutable is not null)
        {
            paths.Remove(coreExecutable);
            paths.Insert(0, executableOverride);
        }
        foreach (string mapped in paths)
        {
            string path = StripDeleted(mapped, out _);
            if (!path.StartsWith('/')) continue;
            string name = System.IO.Path.GetFileName(path);
            string? known = KnownAllocator(name);
            if (known is null && !DefinesMalloc(path)) continue;
            string who = known ?? (mapped == coreExecutable || path == executableOverride ? "the executable's own malloc" : $"a malloc of its own in {name}");
            throw new LeakToolsException(FailureKind.NotSupported, "UnsupportedAllocator",
                $"malloc in this process comes from {who} ({path}), not from glibc. Find-LeakedAllocation reads glibc's malloc only; it does not guess at other allocators' heaps.", path);
        }
    }

    private static string? KnownAllocator(string name) =>
        name.StartsWith("libjemalloc", StringComparison.Ordinal) ? "jemalloc"
        : name.StartsWith("libtcmalloc", StringComparison.Ordinal) ? "tcmalloc"
        : name.StartsWith("libmimalloc", StringComparison.Ordinal) ? "mimalloc"
        : name.StartsWith("libasan", StringComparison.Ordinal) ? "AddressSanitizer"
        : name.StartsWith("libhoard", StringComparison.Ordinal) ? "Hoard"
        : null;

    private static bool DefinesMalloc(string path)
    {
        try
        {
            using ElfFile f = ElfFile.Open(path);
            foreach (ElfSymbol s in ElfSymbolReader.Read(f, symtab: false, dynsym: true, plt: false))
            {
                if (s.Name == "malloc" && s.Type is "FUNC" or "IFUNC" && s.Section != "UND" && s.Binding != "LOCAL") return true;
            }
        }
        catch (LeakToolsException)
        {
            // A module we cannot read is no evidence either way.
        }
        return false;
    }

    /// <summary>The release from libc's banner ("... release version 2.36."), read from the file.</summary>
    private static (int Major, int Minor) ReadVersion(ElfFile elf, string path)
    {
        foreach (ElfSection s in elf.Sections)
        {
            if (s.Name != ".rodata" || s.Type == ElfSection.SHT_NOBITS) continue;
            ReadOnlySpan<byte> data = elf.Bytes(s.Offset, s.Size);
            ReadOnlySpan<byte> marker = "GNU C Library"u8;
            int at = data.IndexOf(marker);
            while (at >= 0)
            {
                int end = data[at..].IndexOf((byte)0);
                string text = Encoding.ASCII.GetString(data.Slice(at, end < 0 ? Math.Min(200, data.Length - at) : end));
                Match m = VersionPattern().Match(text);
                if (m.Success)
                {
                    return (int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture),
                            int.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture));
                }
                int next = data[(at + marker.Length)..].IndexOf(marker);
                at = next < 0 ? -1 : at + marker.Length + next;
            }
        }
        throw new LeakToolsException(FailureKind.InvalidData, "UnknownLibcVersion", $"Cannot find glibc's release banner in {path}: it does not look like glibc.", path);
    }

    [GeneratedRegex(@"version (\d+)\.(\d+)")]
    private static partial Regex VersionPattern();

    /// <summary>The GNU build-id of the ELF image loaded at <paramref name="loadAddress"/>, from the
    /// core's copy of its first page (kept by coredump_filter bit 4), or null.</summary>
    internal static string? ReadBuildId(CoreMemory memory, ulong? loadAddress)
    {
        if (loadAddress is not ulong start) return null;
        byte[] head = new byte[4096];
        if (memory.Read(start, head) < 64 || !ElfFile.HasElfMagic(head)) return null;
        ulong phoff = BinaryPrimitives.ReadUInt64LittleEndian(head.AsSpan(32));
        int phentsize = BinaryPrimitives.ReadUInt16LittleEndian(head.AsSpan(54));
        int phnum = BinaryPrimitives.ReadUInt16LittleEndian(head.AsSpan(56));
        if (phentsize < 56 || phoff + (ulong)(phnum * phentsize) > (ulong)head.Length) return null;
        ulong firstLoad = ulong.MaxValue;
        var notes = new List<(ulong Vaddr, ulong Size)>();
        for (int i = 0; i < phnum; i++)
        {
            ReadOnlySpan<byte> p = head.AsSpan((int)phoff + i * phentsize, 56);
            uint type = BinaryPrimitives.ReadUInt32LittleEndian(p);
            ulong vaddr = BinaryPrimitives.ReadUInt64LittleEndian(p[16..]);
            ulong offset = BinaryPrimitives.ReadUInt64LittleEndian(p[8..]);
            if (type == 1 && offset == 0) firstLoad = Math.Min(firstLoad, vaddr);
            if (type == 4) notes.Add((vaddr, BinaryPrimitives.ReadUInt64LittleEndian(p[32..])));
        }
        if (firstLoad == ulong.MaxValue) return null;
        foreach (var (vaddr, size) in notes)
        {
            if (size > 4096) continue;
            byte[] n = new byte[size];
            if (memory.Read(start + vaddr - firstLoad, n) < n.Length) continue;
            int pos = 0;
            while (pos + 12 <= n.Length)
            {
                int namesz = BinaryPrimitives.ReadInt32LittleEndian(n.AsSpan(pos));
                int descsz = BinaryPrimitives.ReadInt32LittleEndian(n.AsSpan(pos + 4));
                uint type = BinaryPrimitives.ReadUInt32LittleEndian(n.AsSpan(pos + 8));
                int desc = pos + 12 + ((namesz + 3) & ~3);
                if (namesz < 0 || descsz < 0 || desc + descsz > n.Length) break;
                if (type == 3 && namesz == 4 && n.AsSpan(pos + 12, 3).SequenceEqual("GNU"u8))
                    return Convert.ToHexString(n, desc, descsz).ToLowerInvariant();
                pos = desc + ((descsz + 3) & ~3);
            }
        }
        return null;
    }

    private void ReadSymbols(CoreMemory memory, SymbolCache symbols, string diskPath, ElfFile elf, List<string> warnings)
    {
        List<ElfSymbol> all;
        try
        {
            ModuleSymbolizer module = symbols.GetModule(diskPath, Path);
            all = module.AllSymbols(includeUndefined: false);
            SymbolSource = module.DebugFile ?? (module.HasMiniDebugInfo ? "MiniDebugInfo" : "libc's own symbol tables");
        }
        catch (LeakToolsException ex)
        {
            warnings.Add($"Cannot read libc's symbols ({ex.Message}); finding the arenas by scanning.");
            all = new List<ElfSymbol>();
        }
        ElfSymbol? Find(string name, string type) => all.FirstOrDefault(s => s.Name == name && s.Type == type);
        ElfSymbol? arena = Find("main_arena", "OBJECT");
        ElfSymbol? mp = Find("mp_", "OBJECT");
        ElfSymbol? tcache = Find("tcache", "TLS");
        ElfSymbol? key = Find("tcache_key", "OBJECT");
        if (arena is not null && arena.Size != 0 && arena.Size != GlibcLayout.ArenaSize)
            throw LayoutMismatch("main_arena", arena.Size, GlibcLayout.ArenaSize);
        if (mp is not null && mp.Size != 0 && mp.Size != Layout.MpSize)
            throw LayoutMismatch("mp_", mp.Size, Layout.MpSize);
        MainArena = arena is null ? null : arena.Address + Bias;
        MallocParameters = mp is null ? null : mp.Address + Bias;
        TcacheKeyAddress = key is null ? null : key.Address + Bias;
        if (arena is null) SymbolSource = "none (main_arena found by scanning)";

        // Initial-exec TLS: each R_X86_64_TPOFF64 slot of libc's GOT holds a variable's offset from
        // the thread pointer once ld.so has relocated it; the relocation's addend is the variable's
        // offset in libc's TLS block, which the `tcache` symbol gives.
        foreach (ElfSection rela in elf.Sections)
        {
            if (rela.Type != ElfSection.SHT_RELA) continue;
            ReadOnlySpan<byte> data = elf.SectionData(rela).Span;
            for (int i = 0; i + 24 <= data.Length; i += 24)
            {
                ulong offset = BinaryPrimitives.ReadUInt64LittleEndian(data[i..]);
                ulong info = BinaryPrimitives.ReadUInt64LittleEndian(data[(i + 8)..]);
                long addend = BinaryPrimitives.ReadInt64LittleEndian(data[(i + 16)..]);
                if ((uint)info != R_X86_64_TPOFF64 || info >> 32 != 0) continue;
                if (!memory.TryU64(offset + Bias, out ulong tpoff)) continue;
                ThreadOffsets.Add((long)tpoff);
                if (tcache is not null && (ulong)addend == tcache.Address) TcacheThreadOffset = (long)tpoff;
            }
        }
        if (tcache is not null && TcacheThreadOffset is null)
            warnings.Add("libc's GOT slot for the tcache variable is not in the core; per-thread caches are found by their contents.");
    }

    private LeakToolsException LayoutMismatch(string name, long size, long expected) =>
        new(FailureKind.NotSupported, "UnsupportedLibcVersion",
            $"{name} in {Path} is {size} bytes, not the {expected} of glibc {Layout.Version}'s layout: this build of glibc is not supported.", Path);
}
