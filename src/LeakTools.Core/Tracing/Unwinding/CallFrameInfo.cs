using LeakTools.Core.Symbols;

namespace LeakTools.Core.Tracing.Unwinding;

/// <summary>How to recover one register of the caller (DWARF CFI register rule).</summary>
public enum CfiRuleKind : byte { SameValue, Undefined, Offset, ValOffset, Register, Expression, ValExpression }

public struct CfiRule
{
    public CfiRuleKind Kind;
    public long Value;          // offset from the CFA, or a register number
    public byte[]? Expression;
}

/// <summary>The unwind row for one code address: how to compute the CFA and the caller's registers
/// (x86-64 DWARF numbering: 3 rbx, 6 rbp, 7 rsp, 12-15 r12-r15, 16 the return address).</summary>
public sealed class CfiRow
{
    public const int RegisterCount = 17;
    public int CfaRegister = 7;
    public long CfaOffset = 8;
    public byte[]? CfaExpression;
    public readonly CfiRule[] Rules = new CfiRule[RegisterCount];
    public bool SignalFrame;

    public CfiRow Clone()
    {
        var c = new CfiRow { CfaRegister = CfaRegister, CfaOffset = CfaOffset, CfaExpression = CfaExpression, SignalFrame = SignalFrame };
        Array.Copy(Rules, c.Rules, RegisterCount);
        return c;
    }
}

/// <summary>The call frame information of one ELF module (.eh_frame, else .debug_frame): every
/// FDE indexed by its address range (file virtual addresses), and the row for an address computed
/// by running the CIE's and FDE's instructions. Parsed once per module and shared.</summary>
public sealed class CallFrameInfo
{
    private readonly record struct Cie(int CodeAlign, long DataAlign, int ReturnRegister, byte FdeEncoding, bool Signal, byte[] Instructions, int AddressSize, bool HasAugmentationData);
    private readonly record struct Fde(ulong Start, ulong End, Cie Cie, byte[] Instructions);

    private readonly Fde[] _fdes;
    private readonly ulong[] _starts;

    private CallFrameInfo(List<Fde> fdes)
    {
        fdes.Sort((a, b) => a.Start.CompareTo(b.Start));
        _fdes = fdes.ToArray();
        _starts = _fdes.Select(f => f.Start).ToArray();
    }

    public int Count => _fdes.Length;

    public static readonly CallFrameInfo Empty = new(new List<Fde>());

    /// <summary>Reads the CFI of <paramref name="file"/>: .eh_frame, plus .debug_frame for code
    /// .eh_frame does not cover. Malformed entries are skipped.</summary>
    public static CallFrameInfo Read(ElfFile file)
    {
        var fdes = new List<Fde>();
        ElfSection? eh = file.FindSection(".eh_frame");
        if (eh is not null && eh.Type != ElfSection.SHT_NOBITS) Parse(file.SectionData(eh).Span, eh.Address, isEh: true, fdes);
        ElfSection? debug = file.FindSection(".debug_frame");
        if (debug is not null && debug.Type != ElfSection.SHT_NOBITS)
        {
            var more = new List<Fde>();
            try { Parse(file.SectionData(debug).Span, 0, isEh: false, more); }
            catch (LeakToolsException) { }
            if (fdes.Count == 0) fdes = more;
            else
            {
                var covered = new CallFrameInfo(new List<Fde>(fdes));
                fdes.AddRange(more.Where(f => covered.Find(f.Start) < 0));
            }
        }
        return new CallFrameInfo(fdes);
    }

    private static void Parse(ReadOnlySpan<byte> data, ulong sectionAddress, bool isEh, List<Fde> fdes)
    {
        var cies = new Dictionary<long, Cie?>();
        int pos = 0;
        while (pos + 4 <= data.Length)
        {
            try
            {
                var r = new SpanReader(data, pos);
                var (length, is64) = r.InitialLength();
                if (length == 0)
                {
                    if (isEh) break; // terminator
                    pos = r.Position;
                    continue;
                }
                int bodyStart = r.Position;
                long next = bodyStart + (long)length;
                if (next > data.Length || length > int.MaxValue) break;
                int idPosition = r.Position;
                ulong id = r.Offset(is64);
                bool isCie = isEh ? id == 0 : (is64 ? id == ulong.MaxValue : id == 0xffffffff);
                if (!isCie)
                {
                    long ciePos = isEh ? idPosition - (long)id : (long)id;
                    if (!cies.TryGetValue(ciePos, out Cie? cie))
                    {
                        cie = ParseCie(data, (int)ciePos, isEh);
                        cies[ciePos] = cie;
                    }
                    if (cie is Cie c)
                    {
                        var fr = new SpanReader(data.Slice(0, (int)next), r.Position);
                        ulong start = ReadEncoded(ref fr, isEh ? c.FdeEncoding : (byte)(c.AddressSize == 4 ? 0x03 : 0x04), sectionAddress);
                        ulong range = ReadEncoded(ref fr, (byte)((isEh ? c.FdeEncoding : (byte)(c.AddressSize == 4 ? 0x03 : 0x04)) & 0x0f), sectionAddress);
                        if (c.HasAugmentationData)
                        {
                            ulong augLength = fr.ULeb();
                            fr.Skip(augLength);
                        }
                        byte[] instructions = data.Slice(fr.Position, (int)(next - fr.Position)).ToArray();
                        if (start != 0 && range != 0) fdes.Add(new Fde(start, start + range, c, instructions));
                    }
                }
                pos = (int)next;
            }
            catch (BadFormatException)
            {
                break;
            }
        }
    }

    private static Cie? ParseCie(ReadOnlySpan<byte> data, int pos, bool isEh)
    {
        if (pos < 0 || pos >= data.Length) return null;
        try
        {
            var r = new SpanReader(data, pos);
            var (length, is64) = r.InitialLength();
            int end = r.Position + (int)length;
            r = new SpanReader(data.Slice(0, end), r.Position);
            r.Offset(is64);
            byte version = r.U8();
            string aug = System.Text.Encoding.ASCII.GetString(r.CString());
            int addressSize = 8;
            if (!isEh && version >= 4)
            {
                addressSize = r.U8();
                r.U8(); // segment selector size
            }
            if (aug.Contains("eh")) r.Skip(8);
            int codeAlign = (int)r.ULeb();
            long dataAlign = r.SLeb();
            int ra = version == 1 ? r.U8() : (int)r.ULeb();
            byte fdeEncoding = 0;
            bool signal = false;
            if (aug.StartsWith('z'))
            {
                ulong augLength = r.ULeb();
                int augEnd = r.Position + (int)augLength;
                foreach (char ch in aug.AsSpan(1))
                {
                    switch (ch)
                    {
                        case 'R': fdeEncoding = r.U8(); break;
                        case 'L': r.U8(); break;
                        case 'P':
                            byte enc = r.U8();
                            ReadEncoded(ref r, enc, 0);
                            break;
                        case 'S': signal = true; break;
                    }
                }
                r.Position = augEnd;
            }
            else if (aug.Length > 0 && aug != "eh")
            {
                return null; // unknown augmentation: cannot find the instructions
            }
            byte[] instructions = data.Slice(r.Position, end - r.Position).ToArray();
            return new Cie(codeAlign, dataAlign, ra, fdeEncoding, signal, instructions, addressSize, aug.StartsWith('z'));
        }
        catch (BadFormatException)
        {
            return null;
        }
    }

    /// <summary>Reads a DW_EH_PE-encoded pointer; pc-relative values are relative to the field's
    /// address in the section (<paramref name="sectionAddress"/> + position).</summary>
    private static ulong ReadEncoded(ref SpanReader r, byte encoding, ulong sectionAddress)
    {
        if (encoding == 0xff) return 0;
        ulong fieldAddress = sectionAddress + (ulong)r.Position;
        ulong value = (encoding & 0x0f) switch
        {
            0x00 => r.U64(),
            0x01 => r.ULeb(),
            0x02 => r.U16(),
            0x03 => r.U32(),
            0x04 => r.U64(),
            0x09 => (ulong)r.SLeb(),
            0x0a => (ulong)(long)(short)r.U16(),
            0x0b => (ulong)(long)(int)r.U32(),
            0x0c => r.U64(),
            _ => throw new BadFormatException($"pointer encoding 0x{encoding:x2}"),
        };
        if ((encoding & 0x70) == 0x10) value += fieldAddress;
        return value;
    }

    private int Find(ulong address)
    {
        int lo = 0, hi = _starts.Length - 1, found = -1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (_starts[mid] <= address) { found = mid; lo = mid + 1; }
            else hi = mid - 1;
        }
        return found >= 0 && address < _fdes[found].End ? found : -1;
    }

    /// <summary>The unwind row at file virtual address <paramref name="address"/>, or null when no
    /// FDE covers it.</summary>
    public CfiRow? RowAt(ulong address)
    {
        int i = Find(address);
        if (i < 0) return null;
        Fde fde = _fdes[i];
        var row = new CfiRow { SignalFrame = fde.Cie.Signal };
        for (int reg = 0; reg < CfiRow.RegisterCount; reg++) row.Rules[reg].Kind = CfiRuleKind.SameValue;
        row.Rules[7] = default; // rsp: the CFA itself
        try
        {
            Execute(fde.Cie.Instructions, fde.Cie, fde.Start, ulong.MaxValue, row, null);
            CfiRow initial = row.Clone();
            Execute(fde.Instructions, fde.Cie, fde.Start, address, row, initial);
        }
        catch (BadFormatException)
        {
            return null;
        }
        return row;
    }

    private static void Execute(byte[] code, Cie cie, ulong location, ulong target, CfiRow row, CfiRow? initial)
    {
        var stack = new Stack<CfiRow>();
        var r = new SpanReader(code);
        ulong loc = location;
        while (!r.AtEnd)
        {
            byte op = r.U8();
            int high = op & 0xc0, low = op & 0x3f;
            if (high == 0x40)
            {
                loc += (ulong)(low * cie.CodeAlign);
                if (loc > target) return;
                continue;
            }
            if (high == 0x80)
            {
                SetRule(row, low, CfiRuleKind.Offset, (long)r.ULeb() * cie.DataAlign);
                continue;
            }
            if (high == 0xc0)
            {
                Restore(row, initial, low);
                continue;
            }
            switch (op)
            {
                case 0x00: break;
                case 0x01: loc = r.U64(); if (loc > target) return; break;
                case 0x02: loc += (ulong)(r.U8() * cie.CodeAlign); if (loc > target) return; break;
                case 0x03: loc += (ulong)(r.U16() * cie.CodeAlign); if (loc > target) return; break;
                case 0x04: loc += (ulong)(r.U32() * cie.CodeAlign); if (loc > target) return; break;
                case 0x05: { int reg = (int)r.ULeb(); SetRule(row, reg, CfiRuleKind.Offset, (long)r.ULeb() * cie.DataAlign); break; }
                case 0x06: Restore(row, initial, (int)r.ULeb()); break;
                case 0x07: SetRule(row, (int)r.ULeb(), CfiRuleKind.Undefined, 0); break;
                case 0x08: SetRule(row, (int)r.ULeb(), CfiRuleKind.SameValue, 0); break;
                case 0x09: { int reg = (int)r.ULeb(); SetRule(row, reg, CfiRuleKind.Register, (long)r.ULeb()); break; }
                case 0x0a: stack.Push(row.Clone()); break;
                case 0x0b:
                    if (stack.Count > 0)
                    {
                        CfiRow saved = stack.Pop();
                        // DWARF: restore_state restores the register rules; the CFA rule too in practice (gcc, libgcc).
                        Array.Copy(saved.Rules, row.Rules, CfiRow.RegisterCount);
                        row.CfaRegister = saved.CfaRegister;
                        row.CfaOffset = saved.CfaOffset;
                        row.CfaExpression = saved.CfaExpression;
                    }
                    break;
                case 0x0c: row.CfaRegister = (int)r.ULeb(); row.CfaOffset = (long)r.ULeb(); row.CfaExpression = null; break;
                case 0x0d: row.CfaRegister = (int)r.ULeb(); row.CfaExpression = null; break;
                case 0x0e: row.CfaOffset = (long)r.ULeb(); break;
                case 0x0f: row.CfaExpression = r.Bytes((int)r.ULeb()).ToArray(); break;
                case 0x10: { int reg = (int)r.ULeb(); byte[] e = r.Bytes((int)r.ULeb()).ToArray(); SetRule(row, reg, CfiRuleKind.Expression, 0, e); break; }
                case 0x11: { int reg = (int)r.ULeb(); SetRule(row, reg, CfiRuleKind.Offset, r.SLeb() * cie.DataAlign); break; }
                case 0x12: row.CfaRegister = (int)r.ULeb(); row.CfaOffset = r.SLeb() * cie.DataAlign; row.CfaExpression = null; break;
                case 0x13: row.CfaOffset = r.SLeb() * cie.DataAlign; break;
                case 0x14: { int reg = (int)r.ULeb(); SetRule(row, reg, CfiRuleKind.ValOffset, (long)r.ULeb() * cie.DataAlign); break; }
                case 0x15: { int reg = (int)r.ULeb(); SetRule(row, reg, CfiRuleKind.ValOffset, r.SLeb() * cie.DataAlign); break; }
                case 0x16: { int reg = (int)r.ULeb(); byte[] e = r.Bytes((int)r.ULeb()).ToArray(); SetRule(row, reg, CfiRuleKind.ValExpression, 0, e); break; }
                case 0x2e: r.ULeb(); break; // GNU_args_size
                case 0x2f: { int reg = (int)r.ULeb(); SetRule(row, reg, CfiRuleKind.Offset, -(long)r.ULeb() * cie.DataAlign); break; }
                default: throw new BadFormatException($"CFA opcode 0x{op:x2}");
            }
        }
    }

    private static void SetRule(CfiRow row, int reg, CfiRuleKind kind, long value, byte[]? expression = null)
    {
        if (reg < 0 || reg >= CfiRow.RegisterCount) return; // vector registers: not needed to unwind
        row.Rules[reg] = new CfiRule { Kind = kind, Value = value, Expression = expression };
    }

    private static void Restore(CfiRow row, CfiRow? initial, int reg)
    {
        if (reg < 0 || reg >= CfiRow.RegisterCount) return;
        row.Rules[reg] = initial?.Rules[reg] ?? new CfiRule { Kind = CfiRuleKind.SameValue };
    }
}
