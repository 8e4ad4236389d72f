namespace LeakTools.Core.Symbols.Dwarf;

/// <summary>The DWARF sections of one ELF file (decompressed), empty where absent.</summary>
internal sealed class DwarfSections
{
    public ByteBlock Info, Abbrev, Line, Str, LineStr, StrOffsets, Addr, Ranges, RngLists, Aranges;

    private static readonly string[] s_names = { ".debug_info", ".debug_abbrev", ".debug_line", ".debug_str", ".debug_line_str", ".debug_str_offsets", ".debug_addr", ".debug_ranges", ".debug_rnglists", ".debug_aranges" };

    public static DwarfSections From(ElfFile file)
    {
        file.Preload(s_names.Select(file.FindSection));
        return Read(file);
    }

    private static DwarfSections Read(ElfFile file) => new()
    {
        Info = file.SectionData(file.FindSection(".debug_info")),
        Abbrev = file.SectionData(file.FindSection(".debug_abbrev")),
        Line = file.SectionData(file.FindSection(".debug_line")),
        Str = file.SectionData(file.FindSection(".debug_str")),
        LineStr = file.SectionData(file.FindSection(".debug_line_str")),
        StrOffsets = file.SectionData(file.FindSection(".debug_str_offsets")),
        Addr = file.SectionData(file.FindSection(".debug_addr")),
        Ranges = file.SectionData(file.FindSection(".debug_ranges")),
        RngLists = file.SectionData(file.FindSection(".debug_rnglists")),
        Aranges = file.SectionData(file.FindSection(".debug_aranges")),
    };
}

internal readonly record struct AttrSpec(ushort Name, ulong Form, long ImplicitConst);

internal sealed class Abbrev(ushort tag, bool hasChildren, AttrSpec[] specs)
{
    public ushort Tag { get; } = tag;
    public bool HasChildren { get; } = hasChildren;
    public AttrSpec[] Specs { get; } = specs;

    /// <summary>Index of DW_AT_sibling in <see cref="Specs"/>, or -1.</summary>
    public int SiblingIndex { get; } = Array.FindIndex(specs, s => s.Name == 0x01);

    // Byte size of all attributes when every form has a fixed size for a unit shape, cached for
    // the last shape asked (units of one file nearly always share it): -1 when variable.
    private int _fixedShape = -1;
    private int _fixedSize;

    public int FixedSize(int addressSize, bool is64)
    {
        int shape = addressSize * 2 + (is64 ? 1 : 0);
        if (_fixedShape == shape) return _fixedSize;
        int total = 0;
        foreach (AttrSpec spec in Specs)
        {
            int size = DwarfForm.FixedSize(spec.Form, addressSize, is64);
            if (size < 0)
            {
                total = -1;
                break;
            }
            total += size;
        }
        _fixedSize = total;
        _fixedShape = shape;
        return total;
    }
}

/// <summary>One abbreviation table of .debug_abbrev; codes are looked up in an array when dense.</summary>
internal sealed class AbbrevTable
{
    private readonly Abbrev?[] _dense;
    private readonly Dictionary<ulong, Abbrev>? _sparse;

    private AbbrevTable(Abbrev?[] dense, Dictionary<ulong, Abbrev>? sparse)
    {
        _dense = dense;
        _sparse = sparse;
    }

    public Abbrev Get(ulong code)
    {
        Abbrev? a = code < (ulong)_dense.Length ? _dense[code] : null;
        if (a is null && _sparse is not null) _sparse.TryGetValue(code, out a);
        return a ?? throw new BadFormatException($"abbreviation code {code} is not defined");
    }

    public static AbbrevTable Parse(ReadOnlySpan<byte> section, ulong offset)
    {
        if (offset >= (ulong)section.Length) throw new BadFormatException($"abbreviation offset 0x{offset:x} is outside .debug_abbrev");
        var r = new SpanReader(section, (int)offset);
        var list = new List<(ulong Code, Abbrev Abbrev)>();
        ulong max = 0;
        var specs = new List<AttrSpec>();
        while (true)
        {
            ulong code = r.ULeb();
            if (code == 0) break;
            ulong tag = r.ULeb();
            bool children = r.U8() != 0;
            specs.Clear();
            while (true)
            {
                ulong name = r.ULeb();
                ulong form = r.ULeb();
                if (name == 0 && form == 0) break;
                long implicitConst = form == DwarfForm.ImplicitConst ? r.SLeb() : 0;
                specs.Add(new AttrSpec((ushort)Math.Min(name, ushort.MaxValue), form, implicitConst));
            }
            list.Add((code, new Abbrev((ushort)Math.Min(tag, ushort.MaxValue), children, specs.ToArray())));
            max = Math.Max(max, code);
        }
        if (max < 4096 || max < (ulong)list.Count * 2)
        {
            var dense = new Abbrev?[max + 1];
            foreach (var (code, abbrev) in list) dense[code] ??= abbrev;
            return new AbbrevTable(dense, null);
        }
        var sparse = new Dictionary<ulong, Abbrev>();
        foreach (var (code, abbrev) in list) sparse.TryAdd(code, abbrev);
        return new AbbrevTable(Array.Empty<Abbrev>(), sparse);
    }
}

/// <summary>A unit header of .debug_info, plus its root DIE's attributes once read.</summary>
internal sealed class DwarfUnit
{
    public int Offset;
    public int End;
    public int DieStart;
    public ushort Version;
    public byte UnitType;
    public byte AddressSize;
    public bool Is64;
    public ulong AbbrevOffset;

    public bool RootRead;
    public ushort RootTag;
    public string? Name;
    public string? CompDir;
    public ulong StmtList = ulong.MaxValue;
    public ulong LowPc;
    public ulong StrOffsetsBase;
    public ulong AddrBase;
    public ulong RngListsBase;
    public AttrValue RootHighPc;
    public AttrValue RootRanges;

    public bool IsCompileUnit => Version < 5 || UnitType is 1 or 3; // DW_UT_compile, DW_UT_partial

    /// <summary>Reads every unit header of .debug_info by walking unit lengths. Stops at the first
    /// malformed header (what follows it cannot be located).</summary>
    public static List<DwarfUnit> ReadHeaders(ReadOnlySpan<byte> info)
    {
        var units = new List<DwarfUnit>();
        var r = new SpanReader(info);
        while (r.Remaining >= 11)
        {
            int start = r.Position;
            ulong length;
            bool is64;
            try
            {
                (length, is64) = r.InitialLength();
            }
            catch (BadFormatException)
            {
                break;
            }
            if (length > (ulong)r.Remaining || length < 7) break;
            int end = r.Position + (int)length;
            var u = new DwarfUnit { Offset = start, End = end, Is64 = is64 };
            var h = new SpanReader(info[..end], r.Position);
            try
            {
                u.Version = h.U16();
                if (u.Version >= 5)
                {
                    u.UnitType = h.U8();
                    u.AddressSize = h.U8();
                    u.AbbrevOffset = h.Offset(is64);
                    if (u.UnitType is 2 or 6) h.Skip(8 + (is64 ? 8UL : 4UL)); // type signature + offset
                    else if (u.UnitType is 4 or 5) h.Skip(8);                    // dwo id
                }
                else
                {
                    u.AbbrevOffset = h.Offset(is64);
                    u.AddressSize = h.U8();
                }
                u.DieStart = h.Position;
                if (u.Version is >= 2 and <= 5 && u.AddressSize is 4 or 8) units.Add(u);
            }
            catch (BadFormatException)
            {
                // a unit whose header does not fit: skip it
            }
            r.Seek(end);
        }
        return units;
    }
}
