namespace LeakTools.Core.Symbols.Dwarf;

/// <summary>A function or inlined-call DIE with code ranges, found while indexing a unit.</summary>
internal sealed class FunctionEntry
{
    public int DieOffset;
    public long Origin = -1;       // DW_AT_abstract_origin or DW_AT_specification target
    public AttrValue NameAttr;
    public AttrValue LinkageAttr;
    public int Parent = -1;        // enclosing function entry in the same unit
    public int Depth;              // number of enclosing function entries
    public int SubtreeEnd;         // first entry index after this one's descendants
    public bool IsInlined;
    public long CallFile = -1;
    public int CallLine;
    public int CallColumn;
    public int RangeStart;
    public int RangeCount;
    public ulong FirstLow;         // low address of the first range, as binutils keeps it
    public string? Name;           // resolved lazily
    public bool NameResolved;
    public bool NameIsLinkage;
}

/// <summary>The lazily built per-unit index: line table plus functions and inline instances.</summary>
internal sealed class UnitIndex
{
    public static readonly UnitIndex Empty = new(null, Array.Empty<FunctionEntry>(), Array.Empty<(ulong, ulong)>());

    public UnitIndex(LineTable? lines, FunctionEntry[] entries, (ulong Low, ulong High)[] ranges)
    {
        Lines = lines;
        Entries = entries;
        Ranges = ranges;
        var top = new List<(ulong Low, ulong High, int Entry)>();
        for (int i = 0; i < entries.Length; i++)
        {
            if (entries[i].Parent >= 0) continue;
            for (int k = 0; k < entries[i].RangeCount; k++)
            {
                var rg = ranges[entries[i].RangeStart + k];
                top.Add((rg.Low, rg.High, i));
            }
        }
        top.Sort((a, b) => a.Low != b.Low ? a.Low.CompareTo(b.Low) : a.Entry.CompareTo(b.Entry));
        TopLow = top.Select(t => t.Low).ToArray();
        TopHigh = top.Select(t => t.High).ToArray();
        TopEntry = top.Select(t => t.Entry).ToArray();
    }

    public LineTable? Lines { get; }
    public FunctionEntry[] Entries { get; }
    public (ulong Low, ulong High)[] Ranges { get; }
    public ulong[] TopLow { get; }
    public ulong[] TopHigh { get; }
    public int[] TopEntry { get; }

    /// <summary>The innermost function entry containing <paramref name="address"/>, or -1.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public int FindInnermost(ulong address, out ulong rangeLow)
    {
        rangeLow = 0;
        int i = FunctionSymbolIndex.LastAtOrBefore(TopLow, address);
        int top = -1;
        ulong best = ulong.MaxValue;
        for (int steps = 0; i >= 0 && steps < 16; i--, steps++)
        {
            if (address < TopHigh[i] && TopHigh[i] - TopLow[i] < best)
            {
                best = TopHigh[i] - TopLow[i];
                top = TopEntry[i];
                rangeLow = TopLow[i];
            }
        }
        if (top < 0) return -1;
        int found = top;
        FunctionEntry t = Entries[top];
        for (int j = top + 1; j < t.SubtreeEnd; j++)
        {
            FunctionEntry e = Entries[j];
            if (e.Depth < Entries[found].Depth) continue;
            for (int k = 0; k < e.RangeCount; k++)
            {
                var rg = Ranges[e.RangeStart + k];
                if (address >= rg.Low && address < rg.High)
                {
                    found = j;
                    rangeLow = rg.Low;
                    break;
                }
            }
        }
        return found;
    }

    /// <summary>The low address of the range of <paramref name="entry"/> holding the address.</summary>
    public ulong RangeLowOf(int entry, ulong address)
    {
        FunctionEntry e = Entries[entry];
        for (int k = 0; k < e.RangeCount; k++)
        {
            var rg = Ranges[e.RangeStart + k];
            if (address >= rg.Low && address < rg.High) return rg.Low;
        }
        return e.FirstLow;
    }
}

/// <summary>Reads .debug_info/.debug_abbrev/.debug_line (DWARF 2-5) of one file for address
/// lookups. Unit headers are read up front (cheap); the unit address map comes from
/// .debug_aranges or, for units it lacks, the root DIE's ranges; a unit's line table and
/// function/inline index are built on its first lookup. A unit whose data is corrupt is
/// marked broken and answers without lines or functions; nothing here loops unboundedly.</summary>
internal sealed class DwarfInfo
{
    private readonly DwarfSections _s;
    private readonly List<DwarfUnit> _units;
    private readonly int[] _unitOffsets;
    private readonly Dictionary<ulong, AbbrevTable?> _abbrevs = new();
    private readonly Dictionary<int, UnitIndex> _indexes = new();
    private readonly Dictionary<(FormClass, ulong), string?> _strings = new();
    private ulong[] _cuLow = Array.Empty<ulong>();
    private ulong[] _cuHigh = Array.Empty<ulong>();
    private int[] _cuUnit = Array.Empty<int>();
    private bool _cuMapBuilt;

    private readonly Func<bool, ulong, string?> _lineStrings;

    public DwarfInfo(DwarfSections sections)
    {
        _s = sections;
        _lineStrings = (lineStr, offset) =>
        {
            FormClass cls = lineStr ? FormClass.LineStrOffset : FormClass.StrOffset;
            if (_strings.TryGetValue((cls, offset), out string? s)) return s;
            ReadOnlySpan<byte> section = lineStr ? _s.LineStr.Span : _s.Str.Span;
            s = offset < (ulong)section.Length ? SpanReader.StringAt(section, offset) : throw new BadFormatException($"string offset 0x{offset:x} is outside its section");
            _strings[(cls, offset)] = s;
            return s;
        };
        _units = DwarfUnit.ReadHeaders(sections.Info.Span);
        _unitOffsets = _units.Select(u => u.Offset).ToArray();
    }

    public int UnitCount => _units.Count;

    /// <summary>Number of units whose index has been built (for tests of laziness).</summary>
    public int IndexedUnitCount => _indexes.Count;

    /// <summary>Errors met while reading units (corrupt data), for diagnostics.</summary>
    public List<string> Problems { get; } = new();

    // ---- unit address map ----

    private void BuildUnitMap()
    {
        _cuMapBuilt = true;
        var ranges = new List<(ulong Low, ulong High, int Unit)>();
        var covered = new HashSet<int>();
        ReadAranges(ranges, covered);
        for (int i = 0; i < _units.Count; i++)
        {
            if (covered.Contains(i) || !_units[i].IsCompileUnit) continue;
            try
            {
                DwarfUnit u = _units[i];
                ReadRoot(u);
                var list = new List<(ulong, ulong)>();
                UnitRanges(u, list);
                foreach (var (lo, hi) in list) ranges.Add((lo, hi, i));
            }
            catch (BadFormatException ex)
            {
                Problems.Add($"unit at 0x{_units[i].Offset:x}: {ex.Message}");
            }
        }
        ranges.Sort((a, b) => a.Low.CompareTo(b.Low));
        _cuLow = ranges.Select(r => r.Low).ToArray();
        _cuHigh = ranges.Select(r => r.High).ToArray();
        _cuUnit = ranges.Select(r => r.Unit).ToArray();
    }

    private void ReadAranges(List<(ulong Low, ulong High, int Unit)> ranges, HashSet<int> covered)
    {
        ReadOnlySpan<byte> data = _s.Aranges.Span;
        var r = new SpanReader(data);
        try
        {
            while (r.Remaining >= 16)
            {
                int start = r.Position;
                var (length, is64) = r.InitialLength();
                if (length > (ulong)r.Remaining || length < 8) break;
                int end = r.Position + (int)length;
                var a = new SpanReader(data[..end], r.Position);
                a.U16();
                ulong infoOffset = a.Offset(is64);
                int addrSize = a.U8();
                int segSize = a.U8();
                r.Seek(end);
                int unit = UnitAt(infoOffset);
                if (unit < 0 || _units[unit].Offset != (int)infoOffset || addrSize is not (4 or 8) || segSize != 0) continue;
                int tuple = 2 * addrSize;
                int pad = (tuple - (a.Position - start) % tuple) % tuple;
                a.Skip((ulong)pad);
                bool any = false;
                while (a.Remaining >= tuple)
                {
                    ulong lo = a.Sized(addrSize);
                    ulong len = a.Sized(addrSize);
                    if (lo == 0 && len == 0) break;
                    if (len == 0 || lo + len < lo) continue;
                    ranges.Add((lo, lo + len, unit));
                    any = true;
                }
                if (any) covered.Add(unit);
            }
        }
        catch (BadFormatException ex)
        {
            Problems.Add($".debug_aranges: {ex.Message}");
        }
    }

    /// <summary>Index of the unit whose bytes hold .debug_info offset <paramref name="offset"/>, or -1.</summary>
    private int UnitAt(ulong offset)
    {
        int lo = 0, hi = _unitOffsets.Length - 1, found = -1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if ((ulong)_unitOffsets[mid] <= offset)
            {
                found = mid;
                lo = mid + 1;
            }
            else
            {
                hi = mid - 1;
            }
        }
        return found >= 0 && offset < (ulong)_units[found].End ? found : -1;
    }

    private int FindUnit(ulong address)
    {
        if (!_cuMapBuilt) BuildUnitMap();
        int i = FunctionSymbolIndex.LastAtOrBefore(_cuLow, address);
        for (int steps = 0; i >= 0 && steps < 16; i--, steps++)
        {
            if (address < _cuHigh[i]) return _cuUnit[i];
        }
        return -1;
    }

    // ---- attribute values ----

    private AbbrevTable Abbrevs(DwarfUnit u)
    {
        if (!_abbrevs.TryGetValue(u.AbbrevOffset, out AbbrevTable? table))
        {
            try
            {
                table = AbbrevTable.Parse(_s.Abbrev.Span, u.AbbrevOffset);
            }
            catch (BadFormatException)
            {
                table = null;
            }
            _abbrevs[u.AbbrevOffset] = table;
        }
        return table ?? throw new BadFormatException($"the abbreviation table at 0x{u.AbbrevOffset:x} is corrupt");
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static void ReadForm(ref SpanReader r, ulong form, DwarfUnit u, long implicitConst, out AttrValue v)
    {
        v = default;
        for (int hops = 0; form == DwarfForm.Indirect; hops++)
        {
            if (hops > 4) throw new BadFormatException("DW_FORM_indirect chain");
            form = r.ULeb();
        }
        v.Form = form;
        switch (form)
        {
            case DwarfForm.Addr: v.Value = r.Sized(u.AddressSize); v.Class = FormClass.Address; break;
            case DwarfForm.Data1: v.Value = r.U8(); v.Class = FormClass.Constant; break;
            case DwarfForm.Data2: v.Value = r.U16(); v.Class = FormClass.Constant; break;
            case DwarfForm.Data4: v.Value = r.U32(); v.Class = FormClass.Constant; break;
            case DwarfForm.Data8: v.Value = r.U64(); v.Class = FormClass.Constant; break;
            case DwarfForm.Data16: r.Skip(16); v.Class = FormClass.Constant; break;
            case DwarfForm.Udata: v.Value = r.ULeb(); v.Class = FormClass.Constant; break;
            case DwarfForm.Sdata: v.Value = (ulong)r.SLeb(); v.Class = FormClass.SignedConstant; break;
            case DwarfForm.ImplicitConst: v.Value = (ulong)implicitConst; v.Class = FormClass.SignedConstant; break;
            case DwarfForm.Flag: v.Value = r.U8(); v.Class = FormClass.Flag; break;
            case DwarfForm.FlagPresent: v.Value = 1; v.Class = FormClass.Flag; break;
            case DwarfForm.String: v.Value = (ulong)r.Position; r.CString(); v.Class = FormClass.InlineString; break;
            case DwarfForm.Strp: v.Value = r.Offset(u.Is64); v.Class = FormClass.StrOffset; break;
            case DwarfForm.LineStrp: v.Value = r.Offset(u.Is64); v.Class = FormClass.LineStrOffset; break;
            case DwarfForm.Strx or DwarfForm.GnuStrIndex: v.Value = r.ULeb(); v.Class = FormClass.StrIndex; break;
            case DwarfForm.Strx1: v.Value = r.U8(); v.Class = FormClass.StrIndex; break;
            case DwarfForm.Strx2: v.Value = r.U16(); v.Class = FormClass.StrIndex; break;
            case DwarfForm.Strx3: v.Value = r.U24(); v.Class = FormClass.StrIndex; break;
            case DwarfForm.Strx4: v.Value = r.U32(); v.Class = FormClass.StrIndex; break;
            case DwarfForm.Addrx or DwarfForm.GnuAddrIndex: v.Value = r.ULeb(); v.Class = FormClass.AddressIndex; break;
            case DwarfForm.Addrx1: v.Value = r.U8(); v.Class = FormClass.AddressIndex; break;
            case DwarfForm.Addrx2: v.Value = r.U16(); v.Class = FormClass.AddressIndex; break;
            case DwarfForm.Addrx3: v.Value = r.U24(); v.Class = FormClass.AddressIndex; break;
            case DwarfForm.Addrx4: v.Value = r.U32(); v.Class = FormClass.AddressIndex; break;
            case DwarfForm.Ref1: v.Value = (ulong)u.Offset + r.U8(); v.Class = FormClass.Reference; break;
            case DwarfForm.Ref2: v.Value = (ulong)u.Offset + r.U16(); v.Class = FormClass.Reference; break;
            case DwarfForm.Ref4: v.Value = (ulong)u.Offset + r.U32(); v.Class = FormClass.Reference; break;
            case DwarfForm.Ref8: v.Value = (ulong)u.Offset + r.U64(); v.Class = FormClass.Reference; break;
            case DwarfForm.RefUdata: v.Value = (ulong)u.Offset + r.ULeb(); v.Class = FormClass.Reference; break;
            case DwarfForm.RefAddr: v.Value = u.Version <= 2 ? r.Sized(u.AddressSize) : r.Offset(u.Is64); v.Class = FormClass.Reference; break;
            case DwarfForm.SecOffset: v.Value = r.Offset(u.Is64); v.Class = FormClass.SecOffset; break;
            case DwarfForm.Rnglistx: v.Value = r.ULeb(); v.Class = FormClass.RngListIndex; break;
            case DwarfForm.Loclistx: r.ULeb(); v.Class = FormClass.Constant; break;
            case DwarfForm.Exprloc or DwarfForm.Block: r.Skip(r.ULeb()); v.Class = FormClass.Constant; break;
            case DwarfForm.Block1: r.Skip(r.U8()); v.Class = FormClass.Constant; break;
            case DwarfForm.Block2: r.Skip(r.U16()); v.Class = FormClass.Constant; break;
            case DwarfForm.Block4: r.Skip(r.U32()); v.Class = FormClass.Constant; break;
            case DwarfForm.RefSig8: r.Skip(8); v.Class = FormClass.Unsupported; break;
            case DwarfForm.RefSup4: r.Skip(4); v.Class = FormClass.Unsupported; break;
            case DwarfForm.RefSup8: r.Skip(8); v.Class = FormClass.Unsupported; break;
            case DwarfForm.StrpSup or DwarfForm.GnuRefAlt or DwarfForm.GnuStrpAlt: r.Offset(u.Is64); v.Class = FormClass.Unsupported; break;
            default: throw new BadFormatException($"unknown attribute form 0x{form:x}");
        }
    }

    private string? String(in AttrValue v, DwarfUnit u)
    {
        if (v.Class is not (FormClass.StrOffset or FormClass.LineStrOffset or FormClass.InlineString or FormClass.StrIndex)) return null;
        ulong key = v.Value;
        FormClass cls = v.Class;
        if (cls == FormClass.StrIndex)
        {
            ulong size = u.Is64 ? 8UL : 4UL;
            ulong at = u.StrOffsetsBase + v.Value * size;
            ReadOnlySpan<byte> offsets = _s.StrOffsets.Span;
            if (at + size > (ulong)offsets.Length || at + size < at) return null;
            var r = new SpanReader(offsets, (int)at);
            key = r.Offset(u.Is64);
            cls = FormClass.StrOffset;
        }
        if (_strings.TryGetValue((cls, key), out string? s)) return s;
        ReadOnlySpan<byte> section = cls switch
        {
            FormClass.StrOffset => _s.Str.Span,
            FormClass.LineStrOffset => _s.LineStr.Span,
            _ => _s.Info.Span,
        };
        s = key < (ulong)section.Length ? SpanReader.StringAt(section, key) : null;
        _strings[(cls, key)] = s;
        return s;
    }

    private ulong Address(in AttrValue v, DwarfUnit u)
    {
        if (v.Class == FormClass.Address) return v.Value;
        if (v.Class != FormClass.AddressIndex) throw new BadFormatException("an address attribute has a non-address form");
        ulong at = u.AddrBase + v.Value * u.AddressSize;
        ReadOnlySpan<byte> addr = _s.Addr.Span;
        if (at + u.AddressSize > (ulong)addr.Length || at < u.AddrBase) throw new BadFormatException($"address index {v.Value} is outside .debug_addr");
        var r = new SpanReader(addr, (int)at);
        return r.Sized(u.AddressSize);
    }

    // ---- root DIE and ranges ----

    private void ReadRoot(DwarfUnit u)
    {
        if (u.RootRead) return;
        u.RootRead = true;
        AbbrevTable table = Abbrevs(u);
        var r = new SpanReader(_s.Info.Span[..u.End], u.DieStart);
        ulong code = r.ULeb();
        if (code == 0) return;
        Abbrev a = table.Get(code);
        u.RootTag = a.Tag;
        AttrValue name = default, compDir = default, low = default;
        foreach (AttrSpec spec in a.Specs)
        {
            ReadForm(ref r, spec.Form, u, spec.ImplicitConst, out AttrValue v);
            switch (spec.Name)
            {
                case DwarfName.AtName: name = v; break;
                case DwarfName.AtCompDir: compDir = v; break;
                case DwarfName.AtStmtList: u.StmtList = v.Value; break;
                case DwarfName.AtLowPc: low = v; break;
                case DwarfName.AtHighPc: u.RootHighPc = v; break;
                case DwarfName.AtRanges: u.RootRanges = v; break;
                case DwarfName.AtStrOffsetsBase: u.StrOffsetsBase = v.Value; break;
                case DwarfName.AtAddrBase or DwarfName.AtGnuAddrBase: u.AddrBase = v.Value; break;
                case DwarfName.AtRnglistsBase or DwarfName.AtGnuRangesBase: u.RngListsBase = v.Value; break;
            }
        }
        if (u.Version >= 5 && u.StrOffsetsBase == 0 && !_s.StrOffsets.IsEmpty) u.StrOffsetsBase = u.Is64 ? 16UL : 8UL;
        if (u.Version >= 5 && u.AddrBase == 0 && !_s.Addr.IsEmpty) u.AddrBase = 8;
        u.Name = String(name, u);
        u.CompDir = String(compDir, u);
        if (low.IsPresent) u.LowPc = Address(low, u);
    }

    /// <summary>The address ranges of the unit's root DIE.</summary>
    private void UnitRanges(DwarfUnit u, List<(ulong, ulong)> output)
    {
        if (u.RootRanges.IsPresent) ReadRanges(u.RootRanges, u, output);
        else if (u.RootHighPc.IsPresent) AddLowHigh(u.LowPc, u.RootHighPc, u, output);
    }

    private void AddLowHigh(ulong low, in AttrValue high, DwarfUnit u, List<(ulong, ulong)> output)
    {
        ulong hi = high.Class is FormClass.Address or FormClass.AddressIndex ? Address(high, u) : low + high.Value;
        if (hi > low) output.Add((low, hi));
    }

    private void ReadRanges(in AttrValue ranges, DwarfUnit u, List<(ulong, ulong)> output)
    {
        if (u.Version >= 5 || ranges.Class == FormClass.RngListIndex)
        {
            ulong offset = ranges.Value;
            if (ranges.Class == FormClass.RngListIndex)
            {
                ulong size = u.Is64 ? 8UL : 4UL;
                ulong at = u.RngListsBase + ranges.Value * size;
                ReadOnlySpan<byte> lists = _s.RngLists.Span;
                if (at + size > (ulong)lists.Length || at < u.RngListsBase) throw new BadFormatException("range list index is outside .debug_rnglists");
                var ri = new SpanReader(lists, (int)at);
                offset = u.RngListsBase + ri.Offset(u.Is64);
            }
            ReadRngList(offset, u, output);
            return;
        }
        ReadOnlySpan<byte> data = _s.Ranges.Span;
        if (ranges.Value >= (ulong)data.Length) throw new BadFormatException($"range list offset 0x{ranges.Value:x} is outside .debug_ranges");
        var r = new SpanReader(data, (int)ranges.Value);
        ulong baseAddress = u.LowPc;
        ulong maxAddress = u.AddressSize == 8 ? ulong.MaxValue : uint.MaxValue;
        for (int n = 0; n < 1_000_000; n++)
        {
            ulong start = r.Sized(u.AddressSize);
            ulong end = r.Sized(u.AddressSize);
            if (start == 0 && end == 0) return;
            if (start == maxAddress)
            {
                baseAddress = end;
                continue;
            }
            if (end > start) output.Add((baseAddress + start, baseAddress + end));
        }
    }

    private void ReadRngList(ulong offset, DwarfUnit u, List<(ulong, ulong)> output)
    {
        ReadOnlySpan<byte> data = _s.RngLists.Span;
        if (offset >= (ulong)data.Length) throw new BadFormatException($"range list offset 0x{offset:x} is outside .debug_rnglists");
        var r = new SpanReader(data, (int)offset);
        ulong baseAddress = u.LowPc;
        for (int n = 0; n < 1_000_000; n++)
        {
            byte kind = r.U8();
            ulong lo, hi;
            switch (kind)
            {
                case 0: return; // DW_RLE_end_of_list
                case 1: baseAddress = Address(new AttrValue { Class = FormClass.AddressIndex, Value = r.ULeb() }, u); continue;
                case 2:
                    lo = Address(new AttrValue { Class = FormClass.AddressIndex, Value = r.ULeb() }, u);
                    hi = Address(new AttrValue { Class = FormClass.AddressIndex, Value = r.ULeb() }, u);
                    break;
                case 3:
                    lo = Address(new AttrValue { Class = FormClass.AddressIndex, Value = r.ULeb() }, u);
                    hi = lo + r.ULeb();
                    break;
                case 4:
                    lo = baseAddress + r.ULeb();
                    hi = baseAddress + r.ULeb();
                    break;
                case 5: baseAddress = r.Sized(u.AddressSize); continue;
                case 6:
                    lo = r.Sized(u.AddressSize);
                    hi = r.Sized(u.AddressSize);
                    break;
                case 7:
                    lo = r.Sized(u.AddressSize);
                    hi = lo + r.ULeb();
                    break;
                default: throw new BadFormatException($"unknown range list entry kind {kind}");
            }
            if (hi > lo) output.Add((lo, hi));
        }
    }

    // ---- per-unit index ----

    private UnitIndex Index(int unitIndex)
    {
        if (_indexes.TryGetValue(unitIndex, out UnitIndex? index)) return index;
        DwarfUnit u = _units[unitIndex];
        try
        {
            index = BuildIndex(u);
        }
        catch (BadFormatException ex)
        {
            Problems.Add($"unit at 0x{u.Offset:x}: {ex.Message}");
            // Keep whatever line table can still be read: functions fall back to ELF symbols.
            LineTable? lines = null;
            try
            {
                if (u.StmtList != ulong.MaxValue) lines = LineTable.Parse(_s, u.StmtList, u.CompDir, u.AddressSize, _lineStrings);
            }
            catch (BadFormatException)
            {
            }
            index = lines is null ? UnitIndex.Empty : new UnitIndex(lines, Array.Empty<FunctionEntry>(), Array.Empty<(ulong, ulong)>());
        }
        _indexes[unitIndex] = index;
        return index;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private UnitIndex BuildIndex(DwarfUnit u)
    {
        ReadRoot(u);
        LineTable? lines = null;
        if (u.StmtList != ulong.MaxValue)
        {
            try
            {
                lines = LineTable.Parse(_s, u.StmtList, u.CompDir, u.AddressSize, _lineStrings);
            }
            catch (BadFormatException ex)
            {
                Problems.Add($"line table at 0x{u.StmtList:x}: {ex.Message}");
            }
        }

        AbbrevTable table = Abbrevs(u);
        var entries = new List<FunctionEntry>();
        var ranges = new List<(ulong, ulong)>();
        var nearest = new List<int> { -1, -1 }; // nearest[d]: enclosing function entry for DIEs at depth d
        var r = new SpanReader(_s.Info.Span[..u.End], u.DieStart);
        int depth = 0;
        bool first = true;
        var scratch = new List<(ulong, ulong)>();
        while (!r.AtEnd)
        {
            int dieOffset = r.Position;
            ulong code = r.ULeb();
            if (code == 0)
            {
                if (--depth <= 0) break;
                continue;
            }
            Abbrev a = table.Get(code);
            bool isFunction = !first && a.Tag is DwarfName.TagSubprogram or DwarfName.TagInlinedSubroutine or DwarfName.TagEntryPoint;
            FunctionEntry? entry = null;
            if (isFunction)
            {
                AttrValue low = default, high = default, rangesAttr = default;
                entry = new FunctionEntry { DieOffset = dieOffset, IsInlined = a.Tag == DwarfName.TagInlinedSubroutine };
                foreach (AttrSpec spec in a.Specs)
                {
                    ReadForm(ref r, spec.Form, u, spec.ImplicitConst, out AttrValue v);
                    switch (spec.Name)
                    {
                        case DwarfName.AtName: entry.NameAttr = v; break;
                        case DwarfName.AtLinkageName or DwarfName.AtMipsLinkageName: entry.LinkageAttr = v; break;
                        case DwarfName.AtLowPc: low = v; break;
                        case DwarfName.AtHighPc: high = v; break;
                        case DwarfName.AtRanges: rangesAttr = v; break;
                        case DwarfName.AtAbstractOrigin or DwarfName.AtSpecification:
                            if (v.Class == FormClass.Reference) entry.Origin = (long)v.Value;
                            break;
                        case DwarfName.AtCallFile: entry.CallFile = (long)v.Value; break;
                        case DwarfName.AtCallLine: entry.CallLine = (int)Math.Min(v.Value, int.MaxValue); break;
                        case DwarfName.AtCallColumn: entry.CallColumn = (int)Math.Min(v.Value, int.MaxValue); break;
                    }
                }
                scratch.Clear();
                if (rangesAttr.IsPresent) ReadRanges(rangesAttr, u, scratch);
                else if (low.IsPresent && high.IsPresent) AddLowHigh(Address(low, u), high, u, scratch);
                if (scratch.Count == 0)
                {
                    entry = null;
                }
                else
                {
                    entry.FirstLow = scratch[0].Item1;
                    entry.RangeStart = ranges.Count;
                    entry.RangeCount = scratch.Count;
                    ranges.AddRange(scratch);
                    int parent = nearest[Math.Min(depth, nearest.Count - 1)];
                    entry.Parent = parent;
                    entry.Depth = parent < 0 ? 0 : entries[parent].Depth + 1;
                    entries.Add(entry);
                }
            }
            else
            {
                int fixedSize = a.FixedSize(u.AddressSize, u.Is64);
                if (a.HasChildren && a.SiblingIndex >= 0 && !first && CannotHoldCode(a.Tag))
                {
                    // A type (struct, enum...) with DW_AT_sibling: jump over its whole subtree.
                    long sibling = -1;
                    for (int k = 0; k < a.Specs.Length; k++)
                    {
                        AttrSpec spec = a.Specs[k];
                        if (k == a.SiblingIndex)
                        {
                            ReadForm(ref r, spec.Form, u, spec.ImplicitConst, out AttrValue v);
                            if (v.Class == FormClass.Reference) sibling = (long)v.Value;
                        }
                        else
                        {
                            SkipForm(ref r, spec.Form, u);
                        }
                    }
                    if (sibling > r.Position && sibling <= u.End)
                    {
                        r.Seek(sibling);
                        continue;
                    }
                }
                else if (fixedSize >= 0)
                {
                    r.Skip((ulong)fixedSize);
                }
                else
                {
                    foreach (AttrSpec spec in a.Specs) SkipForm(ref r, spec.Form, u);
                }
            }
            first = false;
            if (a.HasChildren)
            {
                int inner = entry is not null ? entries.Count - 1 : nearest[Math.Min(depth, nearest.Count - 1)];
                depth++;
                while (nearest.Count <= depth) nearest.Add(-1);
                nearest[depth] = inner;
            }
            else if (depth == 0)
            {
                break; // a root without children
            }
        }

        // Subtree ends: the first later entry that is not deeper.
        var stack = new Stack<int>();
        for (int i = 0; i < entries.Count; i++)
        {
            while (stack.Count > 0 && entries[stack.Peek()].Depth >= entries[i].Depth) entries[stack.Pop()].SubtreeEnd = i;
            stack.Push(i);
        }
        while (stack.Count > 0) entries[stack.Pop()].SubtreeEnd = entries.Count;
        return new UnitIndex(lines, entries.ToArray(), ranges.ToArray());
    }

    /// <summary>Tags whose subtrees never hold code ranges (types), safe to skip by DW_AT_sibling.
    /// Namespaces, classes' enclosing functions and lexical blocks are walked.</summary>
    private static bool CannotHoldCode(ushort tag) => tag is
        0x01 or // array_type
        0x04 or // enumeration_type
        0x13 or // structure_type
        0x15 or // subroutine_type
        0x17 or // union_type
        0x21;   // subrange_type

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static void SkipForm(ref SpanReader r, ulong form, DwarfUnit u)
    {
        switch (form)
        {
            case DwarfForm.FlagPresent or DwarfForm.ImplicitConst: return;
            case DwarfForm.Data1 or DwarfForm.Ref1 or DwarfForm.Flag or DwarfForm.Strx1 or DwarfForm.Addrx1: r.Skip(1); return;
            case DwarfForm.Data2 or DwarfForm.Ref2 or DwarfForm.Strx2 or DwarfForm.Addrx2: r.Skip(2); return;
            case DwarfForm.Strx3 or DwarfForm.Addrx3: r.Skip(3); return;
            case DwarfForm.Data4 or DwarfForm.Ref4 or DwarfForm.Strx4 or DwarfForm.Addrx4 or DwarfForm.RefSup4: r.Skip(4); return;
            case DwarfForm.Data8 or DwarfForm.Ref8 or DwarfForm.RefSig8 or DwarfForm.RefSup8: r.Skip(8); return;
            case DwarfForm.Strp or DwarfForm.LineStrp or DwarfForm.SecOffset or DwarfForm.StrpSup or DwarfForm.GnuRefAlt or DwarfForm.GnuStrpAlt:
                r.Skip(u.Is64 ? 8UL : 4UL);
                return;
            case DwarfForm.Udata or DwarfForm.Sdata or DwarfForm.RefUdata or DwarfForm.Strx or DwarfForm.Addrx or DwarfForm.Rnglistx or DwarfForm.Loclistx or DwarfForm.GnuAddrIndex or DwarfForm.GnuStrIndex:
                r.ULeb();
                return;
            default:
                ReadForm(ref r, form, u, 0, out _);
                return;
        }
    }

    // ---- names ----

    /// <summary>The name binutils would print for an entry: a linkage name anywhere along the
    /// abstract_origin/specification chain (demangled), else the first DW_AT_name.</summary>
    public string? NameOf(FunctionEntry e, int unitIndex)
    {
        if (e.NameResolved) return e.Name;
        e.NameResolved = true;
        DwarfUnit u = _units[unitIndex];
        string? linkage = String(e.LinkageAttr, u);
        string? name = String(e.NameAttr, u);
        long origin = e.Origin;
        for (int hops = 0; linkage is null && origin >= 0 && hops < 16; hops++)
        {
            try
            {
                origin = ReadNameDie((ulong)origin, ref linkage, ref name);
            }
            catch (BadFormatException)
            {
                break;
            }
        }
        e.NameIsLinkage = linkage is not null;
        e.Name = linkage is not null ? Interop.CxxDemangler.Demangle(linkage) : name;
        return e.Name;
    }

    /// <summary>Reads name attributes of the DIE at an absolute .debug_info offset; returns its
    /// own origin/specification reference, or -1.</summary>
    private long ReadNameDie(ulong offset, ref string? linkage, ref string? name)
    {
        int unit = UnitAt(offset);
        if (unit < 0) return -1;
        DwarfUnit u = _units[unit];
        ReadRoot(u);
        if (offset < (ulong)u.DieStart) return -1;
        AbbrevTable table = Abbrevs(u);
        var r = new SpanReader(_s.Info.Span[..u.End], (int)offset);
        ulong code = r.ULeb();
        if (code == 0) return -1;
        Abbrev a = table.Get(code);
        long next = -1;
        foreach (AttrSpec spec in a.Specs)
        {
            ReadForm(ref r, spec.Form, u, spec.ImplicitConst, out AttrValue v);
            switch (spec.Name)
            {
                case DwarfName.AtName: name ??= String(v, u); break;
                case DwarfName.AtLinkageName or DwarfName.AtMipsLinkageName: linkage ??= String(v, u); break;
                case DwarfName.AtAbstractOrigin or DwarfName.AtSpecification:
                    if (v.Class == FormClass.Reference && next < 0) next = (long)v.Value;
                    break;
            }
        }
        return next == (long)offset ? -1 : next;
    }

    // ---- lookup ----

    /// <summary>What DWARF says about one address: the unit's line row and the chain of function
    /// entries (innermost first).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public bool Lookup(ulong address, List<int> chain, out UnitIndex index, out int unit, out string? file, out int line, out int column)
    {
        chain.Clear();
        file = null;
        line = 0;
        column = 0;
        index = UnitIndex.Empty;
        unit = FindUnit(address);
        if (unit < 0) return false;
        index = Index(unit);
        bool hasLine = index.Lines is not null && index.Lines.TryFind(address, out file, out line, out column);
        int e = index.FindInnermost(address, out _);
        for (int hops = 0; e >= 0 && hops < 256; hops++)
        {
            chain.Add(e);
            e = index.Entries[e].Parent;
        }
        return hasLine || chain.Count > 0;
    }

    /// <summary>Builds the index of every unit (for tests and memory measurements).</summary>
    public void IndexAll()
    {
        if (!_cuMapBuilt) BuildUnitMap();
        for (int i = 0; i < _units.Count; i++)
        {
            if (_units[i].IsCompileUnit) Index(i);
        }
    }

    public string? CallFileName(UnitIndex index, FunctionEntry e) => e.CallFile >= 0 ? index.Lines?.FileName(e.CallFile) : null;
}
