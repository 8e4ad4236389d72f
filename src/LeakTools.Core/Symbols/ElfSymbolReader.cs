using LeakTools.Core.Interop;

namespace LeakTools.Core.Symbols;

/// <summary>Reads the symbol tables of an ELF file (.symtab, .dynsym) and synthesizes
/// <c>name@plt</c> symbols for x86-64 PLT stubs (.plt, .plt.sec, .plt.got) by decoding each
/// stub's <c>jmp *GOT(%rip)</c> and matching the GOT slot with the JUMP_SLOT / GLOB_DAT relocations.</summary>
public static class ElfSymbolReader
{
    public const byte STT_NOTYPE = 0, STT_OBJECT = 1, STT_FUNC = 2, STT_SECTION = 3, STT_FILE = 4, STT_COMMON = 5, STT_TLS = 6, STT_GNU_IFUNC = 10;
    private const ushort EM_X86_64 = 62;

    /// <summary>Symbols of <paramref name="file"/>'s .symtab and .dynsym (in that order, each in
    /// table order), then its PLT stubs. <paramref name="table"/> overrides the Table label.</summary>
    public static List<ElfSymbol> Read(ElfFile file, bool symtab = true, bool dynsym = true, bool plt = true, string? table = null)
    {
        var list = new List<ElfSymbol>();
        foreach (ElfSection s in file.Sections)
        {
            if ((s.Type == ElfSection.SHT_SYMTAB && symtab) || (s.Type == ElfSection.SHT_DYNSYM && dynsym))
                ReadTable(file, s, table ?? s.Name, list);
        }
        if (plt) ReadPlt(file, list);
        return list;
    }

    private static void ReadTable(ElfFile file, ElfSection section, string table, List<ElfSymbol> list)
    {
        ReadOnlySpan<byte> data = file.SectionData(section).Span;
        ReadOnlySpan<byte> strings = section.Link < file.Sections.Count ? file.SectionData(file.Sections[(int)section.Link]).Span : default;
        int count = data.Length / 24;
        for (int i = 1; i < count; i++)
        {
            var r = new SpanReader(data.Slice(i * 24, 24));
            uint name = r.U32();
            byte info = r.U8();
            r.U8();
            ushort shndx = r.U16();
            ulong value = r.U64();
            ulong size = r.U64();
            string text = name < (uint)strings.Length ? SpanReader.StringAt(strings, name) : "";
            byte type = (byte)(info & 0xf);
            if (text.Length == 0 && type != STT_SECTION) continue;
            list.Add(new ElfSymbol
            {
                Name = text,
                Address = value,
                Size = size > long.MaxValue ? long.MaxValue : (long)size,
                Type = TypeName(type),
                Binding = BindingName((byte)(info >> 4)),
                Section = SectionName(file, shndx),
                Table = table,
                Module = file.Path,
            });
        }
    }

    private static string SectionName(ElfFile file, ushort index) => index switch
    {
        0 => "UND",
        0xfff1 => "ABS",
        0xfff2 => "COM",
        _ when index < file.Sections.Count => file.Sections[index].Name,
        _ => index.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    public static string TypeName(byte type) => type switch
    {
        STT_NOTYPE => "NOTYPE",
        STT_OBJECT => "OBJECT",
        STT_FUNC => "FUNC",
        STT_SECTION => "SECTION",
        STT_FILE => "FILE",
        STT_COMMON => "COMMON",
        STT_TLS => "TLS",
        STT_GNU_IFUNC => "IFUNC",
        _ => type.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    public static string BindingName(byte binding) => binding switch
    {
        0 => "LOCAL",
        1 => "GLOBAL",
        2 => "WEAK",
        10 => "UNIQUE",
        _ => binding.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    private static void ReadPlt(ElfFile file, List<ElfSymbol> list)
    {
        if (file.Machine != EM_X86_64) return;
        // GOT slot -> symbol name, from the relocations against the dynamic symbol table.
        var slots = new Dictionary<ulong, string>();
        foreach (ElfSection rela in file.Sections)
        {
            if (rela.Type != ElfSection.SHT_RELA || rela.Link >= file.Sections.Count) continue;
            ElfSection symbols = file.Sections[(int)rela.Link];
            if (symbols.Type != ElfSection.SHT_DYNSYM || symbols.Link >= file.Sections.Count) continue;
            ReadOnlySpan<byte> relocs = file.SectionData(rela).Span;
            ReadOnlySpan<byte> syms = file.SectionData(symbols).Span;
            ReadOnlySpan<byte> strings = file.SectionData(file.Sections[(int)symbols.Link]).Span;
            for (int i = 0; i + 24 <= relocs.Length; i += 24)
            {
                var r = new SpanReader(relocs.Slice(i, 24));
                ulong offset = r.U64();
                ulong info = r.U64();
                uint type = (uint)info;
                ulong sym = info >> 32;
                if (type is not (7 or 6) || sym == 0 || (sym + 1) * 24 > (ulong)syms.Length) continue; // JUMP_SLOT, GLOB_DAT
                uint name = BitConverter.ToUInt32(syms.Slice((int)sym * 24, 4));
                if (name < (uint)strings.Length) slots.TryAdd(offset, SpanReader.StringAt(strings, name));
            }
        }
        if (slots.Count == 0) return;

        foreach (ElfSection plt in file.Sections)
        {
            if (plt.Name is not (".plt" or ".plt.sec" or ".plt.got") || plt.Type == ElfSection.SHT_NOBITS) continue;
            ReadOnlySpan<byte> code = file.RawSection(plt);
            int entry = plt.EntrySize is 8 or 16 ? (int)plt.EntrySize : 16;
            for (int start = 0; start + entry <= code.Length; start += entry)
            {
                ReadOnlySpan<byte> stub = code.Slice(start, entry);
                for (int k = 0; k + 6 <= stub.Length; k++)
                {
                    if (stub[k] != 0xff || stub[k + 1] != 0x25) continue;
                    int disp = BitConverter.ToInt32(stub.Slice(k + 2, 4));
                    ulong got = plt.Address + (ulong)(start + k + 6) + (ulong)(long)disp;
                    if (slots.TryGetValue(got, out string? target))
                    {
                        list.Add(new ElfSymbol
                        {
                            Name = target + "@plt",
                            Address = plt.Address + (ulong)start,
                            Size = entry,
                            Type = "FUNC",
                            Binding = "LOCAL",
                            Section = plt.Name,
                            Table = ".plt",
                            Module = file.Path,
                        });
                    }
                    break;
                }
            }
        }
    }

    /// <summary>Fills <see cref="ElfSymbol.Demangled"/>.</summary>
    public static void Demangle(List<ElfSymbol> symbols)
    {
        foreach (ElfSymbol s in symbols)
        {
            if (s.Demangled.Length != 0) continue;
            if (s.Name.EndsWith("@plt", StringComparison.Ordinal))
                s.Demangled = CxxDemangler.Demangle(s.Name[..^4]) + "@plt";
            else
                s.Demangled = CxxDemangler.Demangle(s.Name);
        }
    }
}

/// <summary>Function symbols sorted for binary search: the name covering an address, honouring
/// sizes. Where several symbols start at one address, the name follows binutils' better_fit
/// (the smaller, then table order), so addr2line and LeakTools name the same alias.</summary>
internal sealed class FunctionSymbolIndex
{
    private readonly ulong[] _starts;
    private readonly ulong[] _ends;     // exclusive; for size-0 symbols, the next start
    private readonly ulong[] _maxEnd;   // running maximum of _ends, to find enclosing symbols
    private readonly string[] _names;
    private readonly string?[] _demangled;

    public FunctionSymbolIndex(IEnumerable<ElfSymbol> symbols)
    {
        var candidates = new List<(ulong Start, ulong Size, int Order, string Name)>();
        int order = 0;
        foreach (ElfSymbol s in symbols)
        {
            order++;
            if (s.Type is not ("FUNC" or "IFUNC") || s.Section is "UND" or "ABS" || s.Address == 0 && s.Size == 0) continue;
            candidates.Add((s.Address, (ulong)s.Size, order, s.Name));
        }
        // binutils' better_fit among aliases at one address: sized before size 0, then the
        // smaller, then the first in table order (binding does not matter in binutils 2.40).
        candidates.Sort((a, b) => a.Start != b.Start ? a.Start.CompareTo(b.Start)
            : a.Size != b.Size ? (a.Size == 0 ? 1 : b.Size == 0 ? -1 : a.Size.CompareTo(b.Size))
            : a.Order.CompareTo(b.Order));
        var starts = new List<ulong>(candidates.Count);
        var sizes = new List<ulong>(candidates.Count);
        var names = new List<string>(candidates.Count);
        foreach (var c in candidates)
        {
            if (starts.Count > 0 && starts[^1] == c.Start)
            {
                sizes[^1] = Math.Max(sizes[^1], c.Size); // the group covers as far as its largest alias
                continue;
            }
            starts.Add(c.Start);
            sizes.Add(c.Size);
            names.Add(c.Name);
        }
        _starts = starts.ToArray();
        _names = names.ToArray();
        _demangled = new string?[_names.Length];
        _ends = new ulong[_starts.Length];
        _maxEnd = new ulong[_starts.Length];
        ulong max = 0;
        for (int i = 0; i < _starts.Length; i++)
        {
            ulong end = sizes[i] != 0 ? _starts[i] + sizes[i] : i + 1 < _starts.Length ? _starts[i + 1] : _starts[i] + 1;
            _ends[i] = end;
            max = Math.Max(max, end);
            _maxEnd[i] = max;
        }
    }

    public int Count => _starts.Length;

    /// <summary>The symbol covering <paramref name="address"/>: index, or -1.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public int Find(ulong address)
    {
        int i = LastAtOrBefore(_starts, address);
        for (int steps = 0; i >= 0 && steps < 64; i--, steps++)
        {
            if (_maxEnd[i] <= address) return -1;
            if (address < _ends[i]) return i;
        }
        return -1;
    }

    /// <summary>The symbol starting exactly at <paramref name="address"/>, or -1.</summary>
    public int FindExact(ulong address)
    {
        int i = LastAtOrBefore(_starts, address);
        return i >= 0 && _starts[i] == address ? i : -1;
    }

    public ulong Start(int index) => _starts[index];

    public string Name(int index) => _names[index];

    public string DemangledName(int index) => _demangled[index] ??= CxxDemangler.Demangle(_names[index]);

    internal static int LastAtOrBefore(ulong[] sorted, ulong value)
    {
        int lo = 0, hi = sorted.Length - 1, found = -1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (sorted[mid] <= value)
            {
                found = mid;
                lo = mid + 1;
            }
            else
            {
                hi = mid - 1;
            }
        }
        return found;
    }
}
