using System.Text;
using LeakTools.Core.Dumps;
using LeakTools.Core.Interop;
using LeakTools.Core.Symbols;

namespace LeakTools.Core.Heap;

/// <summary>Describes a block for a person: its first bytes as hex and text, and its C++ type when
/// its first word is a vtable pointer — named by the vtable symbol covering it (_ZTV..., demangled),
/// or, in a stripped module, by the RTTI the vtable points at (vtable[-1] is the typeinfo, whose
/// own vtable must be one of libstdc++'s __cxxabiv1 type-info classes, and whose second word is
/// the mangled type name).</summary>
internal sealed class BlockDescriber
{
    public const int PreviewBytes = 16;

    private readonly CoreMemory _memory;
    private readonly SymbolCache _symbols;
    private readonly ModuleMapping[] _mappings;
    private readonly ulong[] _starts;
    private readonly Dictionary<string, VtableIndex?> _modules = new(StringComparer.Ordinal);
    private readonly Dictionary<ulong, string?> _names = new();

    /// <param name="mappings">The core's file mappings (<see cref="CoreModules.Mappings"/>).</param>
    public BlockDescriber(CoreMemory memory, SymbolCache symbols, IEnumerable<ModuleMapping> mappings)
    {
        _memory = memory;
        _symbols = symbols;
        _mappings = mappings.OrderBy(m => m.Start).ToArray();
        _starts = _mappings.Select(m => m.Start).ToArray();
    }

    public static string Preview(ReadOnlySpan<byte> head)
    {
        var sb = new StringBuilder(PreviewBytes * 4 + 2);
        for (int i = 0; i < head.Length; i++)
        {
            if (i > 0) sb.Append(' ');
            sb.Append(head[i].ToString("x2", System.Globalization.CultureInfo.InvariantCulture));
        }
        sb.Append("  |");
        foreach (byte b in head) sb.Append(b is >= 0x20 and < 0x7f ? (char)b : '.');
        sb.Append('|');
        return sb.ToString();
    }

    /// <summary>The C++ type whose vtable <paramref name="firstWord"/> points into, or null.</summary>
    public string? TypeName(ulong firstWord)
    {
        if (firstWord == 0 || (firstWord & 7) != 0) return null;
        if (_names.TryGetValue(firstWord, out string? known)) return known;
        string? name = null;
        if (FindMapping(firstWord) is ModuleMapping m && ToFileAddress(m, firstWord) is (VtableIndex index, ulong fileAddress))
            name = index.Name(fileAddress) ?? FromRtti(firstWord);
        _names[firstWord] = name;
        return name;
    }

    private ModuleMapping? FindMapping(ulong address)
    {
        int i = Array.BinarySearch(_starts, address);
        if (i < 0) i = ~i - 1;
        return i >= 0 && address < _mappings[i].End ? _mappings[i] : null;
    }

    private (VtableIndex, ulong)? ToFileAddress(ModuleMapping m, ulong address)
    {
        VtableIndex? index = Index(m);
        if (index is null || !index.Module.TryFileOffsetToAddress(address - m.Start + m.FileOffset, out ulong fileAddress)) return null;
        return (index, fileAddress);
    }

    private VtableIndex? Index(ModuleMapping m)
    {
        string key = m.OpenPath ?? m.Path;
        if (_modules.TryGetValue(key, out VtableIndex? index)) return index;
        try
        {
            if (!key.StartsWith('/') || key.EndsWith(" (deleted)", StringComparison.Ordinal)) index = null;
            else index = new VtableIndex(_symbols.GetModule(key, m.Path));
        }
        catch (LeakToolsException)
        {
            index = null;
        }
        _modules[key] = index;
        return index;
    }

    /// <summary>A stripped module: the vtable's RTTI. Every pointer is checked to lead where a
    /// typeinfo must, so a first word that merely points into some data gives no name.</summary>
    private string? FromRtti(ulong vptr)
    {
        if (ReadU64(vptr - 8) is not ulong typeinfo || typeinfo == 0 || (typeinfo & 7) != 0) return null;
        if (ReadU64(typeinfo) is not ulong typeinfoVptr || ReadU64(typeinfo + 8) is not ulong namePtr) return null;
        if (FindMapping(typeinfoVptr) is not ModuleMapping tm || ToFileAddress(tm, typeinfoVptr) is not (VtableIndex ti, ulong ta)) return null;
        string? typeinfoClass = ti.Name(ta);
        if (typeinfoClass is null || !typeinfoClass.StartsWith("__cxxabiv1::", StringComparison.Ordinal) || !typeinfoClass.EndsWith("_type_info", StringComparison.Ordinal)) return null;
        string? mangled = ReadString(namePtr, 512);
        if (mangled is null || mangled.Length == 0) return null;
        string demangled = CxxDemangler.Demangle("_ZTS" + mangled.TrimStart('*'));
        const string prefix = "typeinfo name for ";
        return demangled.StartsWith(prefix, StringComparison.Ordinal) ? demangled[prefix.Length..] : null;
    }

    private ulong? ReadU64(ulong address)
    {
        Span<byte> b = stackalloc byte[8];
        return Read(address, b) == 8 ? BitConverter.ToUInt64(b) : null;
    }

    /// <summary>A NUL-terminated string of printable characters, or null.</summary>
    private string? ReadString(ulong address, int max)
    {
        byte[] buffer = new byte[max];
        int n = Read(address, buffer);
        int nul = Array.IndexOf(buffer, (byte)0, 0, n);
        if (nul < 0) return null;
        for (int i = 0; i < nul; i++)
        {
            if (buffer[i] is < 0x21 or >= 0x7f) return null;
        }
        return Encoding.ASCII.GetString(buffer, 0, nul);
    }

    /// <summary>Bytes from the core, else from the file mapped there (read-only data the kernel
    /// does not dump, such as a non-PIE executable's vtables and type names).</summary>
    private int Read(ulong address, Span<byte> buffer)
    {
        int n = _memory.Read(address, buffer);
        if (n > 0 || FindMapping(address) is not ModuleMapping m || !(m.OpenPath ?? m.Path).StartsWith('/')) return n;
        try
        {
            using var f = new FileStream(m.OpenPath ?? m.Path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1);
            long offset = (long)(address - m.Start + m.FileOffset);
            return RandomAccess.Read(f.SafeFileHandle, buffer[..(int)Math.Min(buffer.Length, (long)(m.End - address))], offset);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return 0;
        }
    }

    /// <summary>The vtable symbols (_ZTV*, with sizes) of one module, sorted.</summary>
    private sealed class VtableIndex
    {
        private readonly ulong[] _start;
        private readonly ulong[] _end;
        private readonly string[] _mangled;
        private readonly string?[] _names;

        public VtableIndex(ModuleSymbolizer module)
        {
            Module = module;
            var vtables = module.AllSymbols(includeUndefined: false)
                .Where(s => s.Size > 0 && s.Type == "OBJECT" && s.Name.StartsWith("_ZTV", StringComparison.Ordinal))
                .GroupBy(s => s.Address).Select(g => g.First())
                .OrderBy(s => s.Address).ToArray();
            _start = vtables.Select(s => s.Address).ToArray();
            _end = vtables.Select(s => s.Address + (ulong)s.Size).ToArray();
            _mangled = vtables.Select(s => s.Name).ToArray();
            _names = new string?[vtables.Length];
        }

        public ModuleSymbolizer Module { get; }

        public string? Name(ulong fileAddress)
        {
            int i = Array.BinarySearch(_start, fileAddress);
            if (i < 0) i = ~i - 1;
            if (i < 0 || fileAddress >= _end[i] || fileAddress < _start[i] + 16) return null; // past offset-to-top and typeinfo
            if (_names[i] is null)
            {
                const string prefix = "vtable for ";
                string d = CxxDemangler.Demangle(_mangled[i]);
                _names[i] = d.StartsWith(prefix, StringComparison.Ordinal) ? d[prefix.Length..] : d;
            }
            return _names[i];
        }
    }
}
