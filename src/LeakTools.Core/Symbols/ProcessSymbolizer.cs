using System.Globalization;
using LeakTools.Core.ProcFs;

namespace LeakTools.Core.Symbols;

/// <summary>A file-backed mapping of an address space: from /proc/PID/maps, or a core's NT_FILE note.
/// <paramref name="Path"/> is the path shown (may end in " (deleted)", or be "[vdso]");
/// <paramref name="OpenPath"/> is where to read it when that differs (/proc/PID/map_files/...).</summary>
public readonly record struct ModuleMapping(ulong Start, ulong End, ulong FileOffset, string Path, string? OpenPath = null);

/// <summary>Symbolizes runtime addresses of one address space (a live process, or a core's
/// mappings) through a shared <see cref="SymbolCache"/>: finds the mapping, turns the address
/// into the module's file virtual address through its PT_LOAD segments (PIE, non-PIE and shared
/// libraries alike), and resolves it. An address outside every file mapping gives a frame with
/// an empty Module. Return addresses (every frame but the innermost) are looked up at address-1
/// so they name the call's own line.</summary>
public sealed class ProcessSymbolizer
{
    private readonly ModuleMapping[] _mappings;
    private readonly ulong[] _starts;
    private readonly SymbolCache _cache;
    private readonly Func<ModuleMapping, byte[]?>? _readImage;
    private readonly Dictionary<string, ModuleSymbolizer?> _modules = new(StringComparer.Ordinal);
    private readonly object _lock = new();

    /// <summary>An address space given as mappings (for a core file: its NT_FILE entries).
    /// <paramref name="readImage"/> reads in-memory images such as the vdso (optional).</summary>
    public ProcessSymbolizer(IEnumerable<ModuleMapping> mappings, SymbolCache cache, Func<ModuleMapping, byte[]?>? readImage = null)
    {
        _mappings = mappings.OrderBy(m => m.Start).ToArray();
        _starts = _mappings.Select(m => m.Start).ToArray();
        _cache = cache;
        _readImage = readImage;
    }

    /// <summary>Problems met opening modules (not ELF, unreadable), one line each.</summary>
    public List<string> Problems { get; } = new();

    public IReadOnlyList<ModuleMapping> Mappings => _mappings;

    /// <summary>Reads /proc/PID/maps now. Deleted files are read through /proc/PID/map_files,
    /// the vdso from the process's memory. Throws ProcessNotFound / AccessDenied.</summary>
    public static ProcessSymbolizer ForProcess(int pid, SymbolCache cache, ProcRoot? root = null)
    {
        root ??= ProcRoot.Default;
        string path = root.File(pid, "maps");
        int errno = ProcFile.TryRead(path, out ReadOnlySpan<byte> text);
        if (errno != 0) throw ProcErrors.FromErrno(errno, pid, path);
        List<ModuleMapping> mappings = ParseMaps(System.Text.Encoding.UTF8.GetString(text), root, pid);
        if (mappings.Count == 0 && !root.ProcessExists(pid)) throw new ProcessExitedException(pid);
        return new ProcessSymbolizer(mappings, cache, m => ReadProcessMemory(root, pid, m));
    }

    /// <summary>Parses /proc/PID/maps text into file-backed mappings (plus [vdso]).</summary>
    public static List<ModuleMapping> ParseMaps(string text, ProcRoot root, int pid)
    {
        var list = new List<ModuleMapping>();
        // A process in another mount namespace (a container) names files of its own root:
        // read them through /proc/PID/root, as perf does.
        string? rootPrefix = null;
        try
        {
            string? target = new FileInfo(root.File(pid, "root")).LinkTarget;
            if (target is not null && target != "/") rootPrefix = root.File(pid, "root");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
        }
        foreach (string line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            // start-end perms offset dev inode   path
            string[] parts = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length < 6) continue;
            string name = parts[5].Trim();
            if (name.Length == 0 || (name[0] != '/' && name != "[vdso]")) continue;
            int dash = parts[0].IndexOf('-');
            if (dash < 0) continue;
            if (!ulong.TryParse(parts[0].AsSpan(0, dash), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong start) ||
                !ulong.TryParse(parts[0].AsSpan(dash + 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong end) ||
                !ulong.TryParse(parts[2], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong offset)) continue;
            string? open = rootPrefix is not null && name[0] == '/' ? rootPrefix + name : null;
            if (name.EndsWith(" (deleted)", StringComparison.Ordinal) || (name[0] == '/' && !File.Exists(open ?? name)))
                open = root.File(pid, $"map_files/{start:x}-{end:x}");
            list.Add(new ModuleMapping(start, end, offset, name, open));
        }
        return list;
    }

    private static byte[]? ReadProcessMemory(ProcRoot root, int pid, ModuleMapping m)
    {
        ulong size = m.End - m.Start;
        if (size == 0 || size > 64 << 20) return null;
        try
        {
            using var mem = new FileStream(root.File(pid, "mem"), FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1);
            mem.Seek((long)m.Start, SeekOrigin.Begin);
            var buffer = new byte[size];
            int read = 0, n;
            while (read < buffer.Length && (n = mem.Read(buffer, read, buffer.Length - read)) > 0) read += n;
            return read == buffer.Length ? buffer : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return null;
        }
    }

    /// <summary>The mapping holding <paramref name="address"/>, or null.</summary>
    public ModuleMapping? FindMapping(ulong address)
    {
        int i = FunctionSymbolIndex.LastAtOrBefore(_starts, address);
        return i >= 0 && address < _mappings[i].End ? _mappings[i] : null;
    }

    private ModuleSymbolizer? Module(ModuleMapping m)
    {
        lock (_lock)
        {
            string key = m.OpenPath ?? m.Path;
            if (_modules.TryGetValue(key, out ModuleSymbolizer? known)) return known;
            ModuleSymbolizer? module = null;
            try
            {
                if (m.Path == "[vdso]")
                {
                    byte[]? image = _readImage?.Invoke(m);
                    if (image is not null) module = _cache.GetModule(image, "[vdso]");
                    else Problems.Add("[vdso]: cannot read it from the process's memory");
                }
                else
                {
                    module = _cache.GetModule(m.OpenPath ?? m.Path, m.Path);
                }
            }
            catch (LeakToolsException ex)
            {
                Problems.Add(ex.Message);
            }
            _modules[key] = module;
            return module;
        }
    }

    /// <summary>Appends the frames of one runtime address. With <paramref name="isReturnAddress"/>,
    /// the lookup uses address-1 (the call instruction), while Address, ModuleOffset and Offset
    /// still describe the address given.</summary>
    public void Resolve(ulong address, bool isReturnAddress, List<StackFrame> output)
    {
        ulong lookup = isReturnAddress && address > 0 ? address - 1 : address;
        ModuleMapping? found = FindMapping(lookup);
        if (found is not ModuleMapping m)
        {
            output.Add(new StackFrame { Address = address });
            return;
        }
        ModuleSymbolizer? module = Module(m);
        ulong fileOffset = address - m.Start + m.FileOffset;
        ulong lookupOffset = lookup - m.Start + m.FileOffset;
        if (module is null)
        {
            output.Add(new StackFrame { Address = address, Module = m.Path, ModuleOffset = fileOffset });
            return;
        }
        if (!module.TryFileOffsetToAddress(lookupOffset, out ulong lookupAddress)) lookupAddress = lookupOffset;
        ulong moduleAddress = lookupAddress + (address - lookup);
        module.Resolve(lookupAddress).AppendFrames(output, address, m.Path, moduleAddress, moduleAddress);
    }

    public List<StackFrame> Resolve(ulong address, bool isReturnAddress = false)
    {
        var list = new List<StackFrame>(2);
        Resolve(address, isReturnAddress, list);
        return list;
    }

    /// <summary>Symbolizes a call stack, innermost first: with <paramref name="adjustReturnAddresses"/>
    /// every address after the first is a return address and is looked up at address-1.</summary>
    public List<StackFrame> ResolveStack(IReadOnlyList<ulong> addresses, bool adjustReturnAddresses = true)
    {
        var list = new List<StackFrame>(addresses.Count + 4);
        for (int i = 0; i < addresses.Count; i++) Resolve(addresses[i], adjustReturnAddresses && i > 0, list);
        return list;
    }
}
