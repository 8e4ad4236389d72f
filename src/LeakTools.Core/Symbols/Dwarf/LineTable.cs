namespace LeakTools.Core.Symbols.Dwarf;

/// <summary>One compilation unit's line-number program (.debug_line, DWARF 2 to 5), run once
/// into address-sorted rows per sequence. Lookups binary-search the sequence, then the row.
/// As binutils does, of several rows at one address the last is kept; discriminators, views and
/// VLIW op indexes are ignored.</summary>
internal sealed class LineTable
{
    private readonly List<(string? Name, ulong Dir)> _fileEntries;
    private readonly List<string?> _dirs;
    private readonly string? _compDir;
    private readonly string?[] _paths; // combined lazily: most files of a unit are never asked for
    private readonly Row[] _rows; // the builder's array as built (with its slack): no copy of megabytes
    private readonly int _rowCount;
    private readonly ulong[] _seqStart;
    private readonly ulong[] _seqEnd;
    private readonly int[] _seqFirst;
    private readonly int[] _seqCount;

    private LineTable(List<(string? Name, ulong Dir)> files, List<string?> dirs, string? compDir, RowList rows, List<(ulong Start, ulong End, int First, int Count)> sequences)
    {
        _fileEntries = files;
        _dirs = dirs;
        _compDir = compDir;
        _paths = new string?[files.Count];
        _rows = rows.Items;
        _rowCount = rows.Count;
        sequences.Sort((a, b) => a.Start.CompareTo(b.Start));
        _seqStart = new ulong[sequences.Count];
        _seqEnd = new ulong[sequences.Count];
        _seqFirst = new int[sequences.Count];
        _seqCount = new int[sequences.Count];
        for (int i = 0; i < sequences.Count; i++)
        {
            (_seqStart[i], _seqEnd[i], _seqFirst[i], _seqCount[i]) = sequences[i];
        }
    }

    public int RowCount => _rowCount;

    /// <summary>The full path of a file by its DWARF number (1-based before DWARF 5, 0-based in 5).</summary>
    public string? FileName(long index)
    {
        if (index < 0 || index >= _paths.Length) return null;
        return _paths[index] ??= CombinePath(_fileEntries[(int)index].Name, _fileEntries[(int)index].Dir, _dirs, _compDir);
    }

    /// <summary>Finds the row covering <paramref name="address"/>.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public bool TryFind(ulong address, out string? file, out int line, out int column)
    {
        file = null;
        line = 0;
        column = 0;
        int s = FunctionSymbolIndex.LastAtOrBefore(_seqStart, address);
        for (int steps = 0; s >= 0 && steps < 16; s--, steps++)
        {
            if (address >= _seqEnd[s]) continue;
            int lo = _seqFirst[s], hi = lo + _seqCount[s] - 1, found = -1;
            while (lo <= hi)
            {
                int mid = (lo + hi) >>> 1;
                if (_rows[mid].Address <= address)
                {
                    found = mid;
                    lo = mid + 1;
                }
                else
                {
                    hi = mid - 1;
                }
            }
            if (found < 0) continue;
            ref readonly Row row = ref _rows[found];
            file = FileName(row.File);
            line = row.Line;
            column = row.Column;
            return true;
        }
        return false;
    }

    /// <summary>16 bytes: file numbers and columns past 65535 are dropped (never seen in practice).</summary>
    private struct Row
    {
        public ulong Address;
        public int Line;
        public ushort FileNumber;
        public ushort ColumnNumber;

        public Row(ulong address, int file, int line, int column)
        {
            Address = address;
            Line = line;
            FileNumber = (uint)file <= ushort.MaxValue ? (ushort)file : ushort.MaxValue;
            ColumnNumber = (uint)column <= ushort.MaxValue ? (ushort)column : (ushort)0;
        }

        public readonly int File => FileNumber;

        public readonly int Column => ColumnNumber;
    }

    /// <summary>A growable array of rows whose storage the table keeps.</summary>
    private sealed class RowList(int capacity)
    {
        public Row[] Items = new Row[Math.Max(16, capacity)];
        public int Count;

        public ref Row this[int index] => ref Items[index];

        public ref Row Last => ref Items[Count - 1];

        public void Add(in Row row)
        {
            if (Count == Items.Length) Array.Resize(ref Items, Items.Length * 2);
            Items[Count++] = row;
        }
    }

    /// <summary>Runs the line program at <paramref name="offset"/> of .debug_line.</summary>
    /// <param name="strings">Reads a string of .debug_line_str (true) or .debug_str (false) by
    /// offset; the caller caches them, so the file tables of many units share their strings.</param>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static LineTable Parse(DwarfSections sections, ulong offset, string? compDir, int unitAddressSize, Func<bool, ulong, string?> strings)
    {
        ReadOnlySpan<byte> data = sections.Line.Span;
        if (offset >= (ulong)data.Length) throw new BadFormatException($"line program offset 0x{offset:x} is outside .debug_line");
        var r = new SpanReader(data, (int)offset);
        var (unitLength, is64) = r.InitialLength();
        if (unitLength > (ulong)r.Remaining) throw new BadFormatException("line program runs past the end of .debug_line");
        int end = r.Position + (int)unitLength;
        var p = new SpanReader(data[..end], r.Position);
        ushort version = p.U16();
        if (version is < 2 or > 5) throw new BadFormatException($"unsupported line table version {version}");
        int addressSize = unitAddressSize;
        if (version >= 5)
        {
            addressSize = p.U8();
            p.U8(); // segment selector size
        }
        ulong headerLength = p.Offset(is64);
        if (headerLength > (ulong)p.Remaining) throw new BadFormatException("line program header runs past its unit");
        int programStart = p.Position + (int)headerLength;
        byte minInstLength = p.U8();
        byte maxOps = version >= 4 ? p.U8() : (byte)1;
        bool defaultIsStmt = p.U8() != 0;
        sbyte lineBase = p.S8();
        byte lineRange = p.U8();
        byte opcodeBase = p.U8();
        if (lineRange == 0) throw new BadFormatException("line_range is 0");
        if (opcodeBase == 0) throw new BadFormatException("opcode_base is 0");
        if (maxOps == 0) maxOps = 1;
        Span<byte> standardLengths = stackalloc byte[256];
        for (int i = 1; i < opcodeBase; i++) standardLengths[i] = p.U8();

        var dirs = new List<string?>();
        var files = new List<(string? Name, ulong Dir)>();
        if (version >= 5)
        {
            ReadEntries(ref p, strings, is64, dirs, null);
            ReadEntries(ref p, strings, is64, null, files);
        }
        else
        {
            dirs.Add(compDir);
            while (true)
            {
                ReadOnlySpan<byte> dir = p.CString();
                if (dir.IsEmpty) break;
                dirs.Add(System.Text.Encoding.UTF8.GetString(dir));
            }
            files.Add((null, 0)); // file numbers start at 1
            while (true)
            {
                ReadOnlySpan<byte> name = p.CString();
                if (name.IsEmpty) break;
                ulong dir = p.ULeb();
                p.ULeb();
                p.ULeb();
                files.Add((System.Text.Encoding.UTF8.GetString(name), dir));
            }
        }

        var rows = new RowList((end - programStart) / 4); // about one row per 3-5 bytes of program
        var sequences = new List<(ulong Start, ulong End, int First, int Count)>();
        p.Seek(programStart);
        ulong address = 0;
        uint opIndex = 0;
        int file = 1, line = 1, column = 0;
        int seqFirst = 0;
        bool sorted = true;

        static void Emit(RowList rows, ulong address, int file, int line, int column, int seqFirst, ref bool sorted)
        {
            if (rows.Count > seqFirst)
            {
                ref Row last = ref rows.Last;
                if (last.Address == address)
                {
                    last = new Row(address, file, line, column);
                    return;
                }
                if (last.Address > address) sorted = false;
            }
            rows.Add(new Row(address, file, line, column));
        }

        void Advance(ulong operationAdvance, ref ulong address, ref uint opIndex)
        {
            if (maxOps == 1)
            {
                address += minInstLength * operationAdvance;
            }
            else
            {
                ulong total = opIndex + operationAdvance;
                address += minInstLength * (total / maxOps);
                opIndex = (uint)(total % maxOps);
            }
        }

        while (!p.AtEnd)
        {
            byte op = p.U8();
            if (op >= opcodeBase)
            {
                int adjusted = op - opcodeBase;
                Advance((ulong)(adjusted / lineRange), ref address, ref opIndex);
                line += lineBase + adjusted % lineRange;
                Emit(rows, address, file, line, column, seqFirst, ref sorted);
                continue;
            }
            switch (op)
            {
                case 0:
                {
                    ulong len = p.ULeb();
                    if (len == 0 || len > (ulong)p.Remaining) throw new BadFormatException("extended line opcode runs past its unit");
                    int next = p.Position + (int)len;
                    byte sub = p.U8();
                    switch (sub)
                    {
                        case 1: // DW_LNE_end_sequence
                            if (rows.Count > seqFirst)
                            {
                                FinishSequence(rows, sequences, seqFirst, address, sorted);
                            }
                            seqFirst = rows.Count;
                            sorted = true;
                            address = 0;
                            opIndex = 0;
                            file = 1;
                            line = 1;
                            column = 0;
                            break;
                        case 2: // DW_LNE_set_address
                            address = p.Sized((int)len - 1 is 8 or 4 or 2 or 1 ? (int)len - 1 : addressSize);
                            opIndex = 0;
                            break;
                        case 3: // DW_LNE_define_file (DWARF 2-4)
                        {
                            ReadOnlySpan<byte> name = p.CString();
                            ulong dir = p.ULeb();
                            files.Add((System.Text.Encoding.UTF8.GetString(name), dir));
                            break;
                        }
                    }
                    p.Seek(next);
                    break;
                }
                case 1: // copy
                    Emit(rows, address, file, line, column, seqFirst, ref sorted);
                    break;
                case 2:
                    Advance(p.ULeb(), ref address, ref opIndex);
                    break;
                case 3:
                    line += (int)p.SLeb();
                    break;
                case 4:
                    file = (int)Math.Min(p.ULeb(), int.MaxValue);
                    break;
                case 5:
                    column = (int)Math.Min(p.ULeb(), int.MaxValue);
                    break;
                case 6: // negate_stmt
                case 7: // set_basic_block
                case 10: // set_prologue_end
                case 11: // set_epilogue_begin
                    break;
                case 8: // const_add_pc
                    Advance((ulong)((255 - opcodeBase) / lineRange), ref address, ref opIndex);
                    break;
                case 9: // fixed_advance_pc
                    address += p.U16();
                    opIndex = 0;
                    break;
                case 12: // set_isa
                    p.ULeb();
                    break;
                default: // unknown standard opcode: skip its operands
                    for (int i = 0; i < standardLengths[op]; i++) p.ULeb();
                    break;
            }
        }
        _ = defaultIsStmt;

        return new LineTable(files, dirs, compDir, rows, sequences);
    }

    private static void FinishSequence(RowList rows, List<(ulong Start, ulong End, int First, int Count)> sequences, int first, ulong endAddress, bool sorted)
    {
        int count = rows.Count - first;
        if (!sorted)
        {
            // Out-of-order rows (corrupt or odd producers): sort stably, keep the last per address.
            var part = rows.Items.AsSpan(first, count).ToArray().Select((r, i) => (r, i)).OrderBy(x => x.r.Address).ThenBy(x => x.i).Select(x => x.r).ToList();
            rows.Count = first;
            foreach (Row r in part)
            {
                if (rows.Count > first && rows.Last.Address == r.Address) rows.Last = r;
                else rows.Add(r);
            }
            count = rows.Count - first;
        }
        ulong start = rows[first].Address;
        ulong end = Math.Max(endAddress, rows.Last.Address);
        // The end_sequence row ends the sequence: a row at the same address as the end is empty.
        if (rows.Last.Address == end && count > 1 && end == endAddress)
        {
            rows.Count--;
            count--;
        }
        if (end > start) sequences.Add((start, end, first, count));
        else rows.Count = first;
    }

    private static void ReadEntries(ref SpanReader p, Func<bool, ulong, string?> strings, bool is64, List<string?>? dirs, List<(string? Name, ulong Dir)>? files)
    {
        byte formatCount = p.U8();
        Span<(ulong Type, ulong Form)> formats = stackalloc (ulong, ulong)[formatCount];
        for (int i = 0; i < formatCount; i++) formats[i] = (p.ULeb(), p.ULeb());
        ulong count = p.ULeb();
        if (count > (ulong)p.Remaining) throw new BadFormatException("too many line table entries");
        for (ulong n = 0; n < count; n++)
        {
            string? name = null;
            ulong dir = 0;
            foreach (var (type, form) in formats)
            {
                ulong value = 0;
                string? text = null;
                switch (form)
                {
                    case DwarfForm.String:
                        text = System.Text.Encoding.UTF8.GetString(p.CString());
                        break;
                    case DwarfForm.LineStrp:
                        text = strings(true, p.Offset(is64));
                        break;
                    case DwarfForm.Strp:
                        text = strings(false, p.Offset(is64));
                        break;
                    case DwarfForm.Udata: value = p.ULeb(); break;
                    case DwarfForm.Data1: value = p.U8(); break;
                    case DwarfForm.Data2: value = p.U16(); break;
                    case DwarfForm.Data4: value = p.U32(); break;
                    case DwarfForm.Data8: value = p.U64(); break;
                    case DwarfForm.Data16: p.Skip(16); break;
                    case DwarfForm.Block: p.Skip(p.ULeb()); break;
                    case DwarfForm.Strx: p.ULeb(); break;
                    case DwarfForm.Strx1: p.U8(); break;
                    case DwarfForm.Strx2: p.U16(); break;
                    case DwarfForm.Strx3: p.U24(); break;
                    case DwarfForm.Strx4: p.U32(); break;
                    default: throw new BadFormatException($"unsupported form 0x{form:x} in a line table header");
                }
                if (type == 1) name = text;        // DW_LNCT_path
                else if (type == 2) dir = value;   // DW_LNCT_directory_index
            }
            if (dirs is not null) dirs.Add(name);
            else files!.Add((name, dir));
        }
    }

    private static string? CombinePath(string? name, ulong dirIndex, List<string?> dirs, string? compDir)
    {
        if (name is null) return null;
        if (name.StartsWith('/')) return name;
        string? dir = dirIndex < (ulong)dirs.Count ? dirs[(int)dirIndex] : null;
        if (dir is null or "") return compDir is null ? name : compDir + "/" + name;
        if (!dir.StartsWith('/') && compDir is not null) return compDir + "/" + dir + "/" + name;
        return dir + "/" + name;
    }
}
