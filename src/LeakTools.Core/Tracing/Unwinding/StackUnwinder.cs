using System.Runtime.CompilerServices;

namespace LeakTools.Core.Tracing.Unwinding;

/// <summary>Walks a stopped thread's stack with CFI (.eh_frame/.debug_frame, so code built
/// without frame pointers unwinds), falling back to the frame-pointer chain where a module has no
/// CFI. The stack is read in bulk with process_vm_readv (grown on demand); unwind rows are cached
/// per code address. Not thread-safe: one per engine thread.</summary>
public sealed class StackUnwinder
{
    private const int Rsp = 7, Rbp = 6, Ra = 16;
    private static readonly int[] s_restored = { 3, 6, 12, 13, 14, 15, 16 };
    private readonly int _pid;
    private readonly RemoteModules _modules;
    private readonly Dictionary<ulong, CfiRow?> _rows = new();
    private byte[] _stack = new byte[16384];
    private ulong _stackBase;
    private int _stackLength;
    private readonly ulong[] _regs = new ulong[CfiRow.RegisterCount];
    private readonly ulong[] _next = new ulong[CfiRow.RegisterCount];

    public StackUnwinder(int pid, RemoteModules modules)
    {
        _pid = pid;
        _modules = modules;
    }

    public RemoteModules Modules => _modules;

    /// <summary>Frames unwound with the frame-pointer fallback since creation (no CFI found).</summary>
    public long FramePointerSteps { get; private set; }

    /// <summary>Unwinds from a caller's frame: <paramref name="pc"/> is a return address into it,
    /// <paramref name="sp"/> the caller's stack pointer after the return, and
    /// <paramref name="regs"/> the caller's callee-saved registers. Writes pc and the return
    /// addresses above it to <paramref name="output"/>; returns how many.</summary>
    /// <summary>Reads the stack from <paramref name="stackPointer"/> up (one process_vm_readv of
    /// 4 KiB; more is read on demand). Call before <see cref="ReadWord"/> and <see cref="Unwind"/>.</summary>
    public void Load(ulong stackPointer)
    {
        _stackBase = stackPointer;
        _stackLength = ProcessMemoryAccess.Read(_pid, stackPointer, _stack.AsSpan(0, InitialRead));
    }

    /// <summary>How much stack the first read takes (more is read when the walk needs it).</summary>
    public const int InitialRead = 2048;

    /// <summary>Reads the stack and, in the same process_vm_readv, two more ranges into
    /// <paramref name="extra"/> (at offsets 0 and <paramref name="secondOffset"/>); returns false
    /// when they could not all be read.</summary>
    public unsafe bool Load(ulong stackPointer, byte[] extra, ulong firstAddress, int firstLength, ulong secondAddress, int secondOffset, int secondLength)
    {
        _stackBase = stackPointer;
        fixed (byte* s = _stack)
        fixed (byte* e = extra)
        {
            var local = stackalloc Interop.Ptrace.IoVec[3];
            var remote = stackalloc Interop.Ptrace.IoVec[3];
            local[0] = new Interop.Ptrace.IoVec { Base = s, Length = InitialRead };
            remote[0] = new Interop.Ptrace.IoVec { Base = (void*)stackPointer, Length = InitialRead };
            local[1] = new Interop.Ptrace.IoVec { Base = e, Length = (nuint)firstLength };
            remote[1] = new Interop.Ptrace.IoVec { Base = (void*)firstAddress, Length = (nuint)firstLength };
            local[2] = new Interop.Ptrace.IoVec { Base = e + secondOffset, Length = (nuint)secondLength };
            remote[2] = new Interop.Ptrace.IoVec { Base = (void*)secondAddress, Length = (nuint)secondLength };
            nint n = Interop.Ptrace.ProcessVmReadv(_pid, local, 3, remote, 3, 0);
            if (n == InitialRead + firstLength + secondLength)
            {
                _stackLength = InitialRead;
                return true;
            }
        }
        // The stack ends within the first read (or the call failed): read it alone.
        Load(stackPointer);
        return false;
    }

    /// <summary>An 8-byte word of the target (from the loaded stack when it covers it).</summary>
    public bool ReadWord(ulong address, out ulong value) => Read(address, out value);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public int Unwind(ulong pc, ulong sp, in UserRegisters regs, Span<ulong> output)
    {
        if (output.Length == 0) return 0;
        Array.Clear(_regs);
        _regs[3] = regs.Rbx; _regs[6] = regs.Rbp; _regs[12] = regs.R12; _regs[13] = regs.R13;
        _regs[14] = regs.R14; _regs[15] = regs.R15; _regs[Rsp] = sp; _regs[Ra] = pc;
        _regs[0] = regs.Rax; _regs[1] = regs.Rdx; _regs[2] = regs.Rcx; _regs[4] = regs.Rsi; _regs[5] = regs.Rdi;
        _regs[8] = regs.R8; _regs[9] = regs.R9; _regs[10] = regs.R10; _regs[11] = regs.R11;
        if (sp < _stackBase || sp - _stackBase > (ulong)_stackLength) Load(sp);

        int n = 0;
        bool returnAddress = true;
        output[n++] = pc;
        while (n < output.Length)
        {
            ulong lookup = returnAddress ? pc - 1 : pc;
            CodeMapping? m = _modules.Find(lookup);
            if (m is null) break;
            CfiRow? row = Row(m, lookup);
            ulong cfa;
            Array.Copy(_regs, _next, CfiRow.RegisterCount);
            if (row is not null)
            {
                if (row.CfaExpression is not null)
                {
                    if (!DwarfExpression.Evaluate(row.CfaExpression, _regs, Read, out cfa)) break;
                }
                else
                {
                    if (row.CfaRegister >= CfiRow.RegisterCount) break;
                    cfa = (ulong)((long)_regs[row.CfaRegister] + row.CfaOffset);
                }
                bool ok = true;
                foreach (int reg in s_restored)
                {
                    CfiRule rule = row.Rules[reg];
                    switch (rule.Kind)
                    {
                        case CfiRuleKind.SameValue: break;
                        case CfiRuleKind.Undefined: _next[reg] = 0; break;
                        case CfiRuleKind.Offset: ok &= Read((ulong)((long)cfa + rule.Value), out _next[reg]); break;
                        case CfiRuleKind.ValOffset: _next[reg] = (ulong)((long)cfa + rule.Value); break;
                        case CfiRuleKind.Register: _next[reg] = rule.Value is >= 0 and < CfiRow.RegisterCount ? _regs[rule.Value] : 0; break;
                        case CfiRuleKind.Expression:
                            ok &= DwarfExpression.Evaluate(rule.Expression!, _regs, Read, out ulong at, cfa) && Read(at, out _next[reg]);
                            break;
                        case CfiRuleKind.ValExpression:
                            ok &= DwarfExpression.Evaluate(rule.Expression!, _regs, Read, out _next[reg], cfa);
                            break;
                    }
                }
                if (!ok || row.Rules[Ra].Kind == CfiRuleKind.Undefined) break;
                _next[Rsp] = cfa;
                returnAddress = !row.SignalFrame;
            }
            else
            {
                // No CFI: the frame-pointer chain ([rbp] = caller's rbp, [rbp+8] = return address).
                ulong rbp = _regs[Rbp];
                if (rbp < _regs[Rsp] || rbp - _regs[Rsp] > 1 << 20 || (rbp & 7) != 0) break;
                if (!Read(rbp, out _next[Rbp]) || !Read(rbp + 8, out _next[Ra])) break;
                _next[Rsp] = rbp + 16;
                FramePointerSteps++;
                returnAddress = true;
            }
            ulong newPc = _next[Ra];
            if (newPc == 0 || (_next[Rsp] <= _regs[Rsp] && returnAddress)) break;
            Array.Copy(_next, _regs, CfiRow.RegisterCount);
            pc = newPc;
            output[n++] = pc;
        }
        return n;
    }

    private CfiRow? Row(CodeMapping m, ulong address)
    {
        if (_rows.TryGetValue(address, out CfiRow? row)) return row;
        row = m.Cfi.RowAt((ulong)((long)address - m.Bias));
        if (_rows.Count > 1 << 18) _rows.Clear();
        _rows[address] = row;
        return row;
    }

    /// <summary>Drops cached rows (after a module was unloaded or replaced).</summary>
    public void Reset() => _rows.Clear();

    private bool Read(ulong address, out ulong value)
    {
        if (address >= _stackBase)
        {
            ulong offset = address - _stackBase;
            if (offset + 8 <= (ulong)_stackLength)
            {
                value = Unsafe.ReadUnaligned<ulong>(ref _stack[(int)offset]);
                return true;
            }
            if (offset < 1 << 20 && Grow(offset + 8))
            {
                value = Unsafe.ReadUnaligned<ulong>(ref _stack[(int)offset]);
                return true;
            }
        }
        Span<byte> b = stackalloc byte[8];
        if (ProcessMemoryAccess.Read(_pid, address, b) == 8)
        {
            value = BitConverter.ToUInt64(b);
            return true;
        }
        value = 0;
        return false;
    }

    /// <summary>Reads more of the stack so that [base, base+needed) is buffered.</summary>
    private bool Grow(ulong needed)
    {
        int want = (int)Math.Max(needed, (ulong)_stackLength * 2);
        want = (want + 4095) & ~4095;
        if (want > _stack.Length) Array.Resize(ref _stack, Math.Max(want, _stack.Length * 2));
        int got = ProcessMemoryAccess.Read(_pid, _stackBase + (ulong)_stackLength, _stack.AsSpan(_stackLength, want - _stackLength));
        if (got <= 0) return false;
        _stackLength += got;
        return needed <= (ulong)_stackLength;
    }
}

/// <summary>The DWARF expression subset CFI uses (PLT entries, signal frames, realigned stacks).</summary>
internal static class DwarfExpression
{
    public delegate bool MemoryReader(ulong address, out ulong value);

    public static bool Evaluate(byte[] code, ulong[] regs, MemoryReader read, out ulong result, ulong? initial = null)
    {
        var stack = new Stack<ulong>();
        if (initial is ulong i) stack.Push(i);
        int pc = 0;
        result = 0;
        try
        {
            while (pc < code.Length)
            {
                byte op = code[pc++];
                if (op >= 0x30 && op <= 0x4f) { stack.Push((ulong)(op - 0x30)); continue; }
                if (op >= 0x50 && op <= 0x6f) { int r = op - 0x50; stack.Push(r < regs.Length ? regs[r] : 0); continue; }
                if (op >= 0x70 && op <= 0x8f) { int r = op - 0x70; long off = Sleb(code, ref pc); stack.Push((ulong)((long)(r < regs.Length ? regs[r] : 0) + off)); continue; }
                ulong a, b;
                switch (op)
                {
                    case 0x03: stack.Push(BitConverter.ToUInt64(code, pc)); pc += 8; break;
                    case 0x06: if (!read(stack.Pop(), out a)) return false; stack.Push(a); break;
                    case 0x08: stack.Push(code[pc++]); break;
                    case 0x09: stack.Push((ulong)(sbyte)code[pc++]); break;
                    case 0x0a: stack.Push(BitConverter.ToUInt16(code, pc)); pc += 2; break;
                    case 0x0b: stack.Push((ulong)BitConverter.ToInt16(code, pc)); pc += 2; break;
                    case 0x0c: stack.Push(BitConverter.ToUInt32(code, pc)); pc += 4; break;
                    case 0x0d: stack.Push((ulong)BitConverter.ToInt32(code, pc)); pc += 4; break;
                    case 0x0e: case 0x0f: stack.Push(BitConverter.ToUInt64(code, pc)); pc += 8; break;
                    case 0x10: stack.Push(Uleb(code, ref pc)); break;
                    case 0x11: stack.Push((ulong)Sleb(code, ref pc)); break;
                    case 0x12: stack.Push(stack.Peek()); break;
                    case 0x13: stack.Pop(); break;
                    case 0x14: a = stack.Pop(); b = stack.Peek(); stack.Push(a); stack.Push(b); break;
                    case 0x16: a = stack.Pop(); b = stack.Pop(); stack.Push(a); stack.Push(b); break;
                    case 0x1a: a = stack.Pop(); b = stack.Pop(); stack.Push(b & a); break;
                    case 0x1c: a = stack.Pop(); b = stack.Pop(); stack.Push(b - a); break;
                    case 0x1e: a = stack.Pop(); b = stack.Pop(); stack.Push(b * a); break;
                    case 0x1f: stack.Push((ulong)-(long)stack.Pop()); break;
                    case 0x20: stack.Push(~stack.Pop()); break;
                    case 0x21: a = stack.Pop(); b = stack.Pop(); stack.Push(b | a); break;
                    case 0x22: a = stack.Pop(); b = stack.Pop(); stack.Push(b + a); break;
                    case 0x23: stack.Push(stack.Pop() + Uleb(code, ref pc)); break;
                    case 0x24: a = stack.Pop(); b = stack.Pop(); stack.Push(b << (int)a); break;
                    case 0x25: a = stack.Pop(); b = stack.Pop(); stack.Push(b >> (int)a); break;
                    case 0x26: a = stack.Pop(); b = stack.Pop(); stack.Push((ulong)((long)b >> (int)a)); break;
                    case 0x27: a = stack.Pop(); b = stack.Pop(); stack.Push(b ^ a); break;
                    case >= 0x29 and <= 0x2e:
                        a = stack.Pop(); b = stack.Pop();
                        bool t = op switch
                        {
                            0x29 => b == a,
                            0x2a => (long)b >= (long)a,
                            0x2b => (long)b > (long)a,
                            0x2c => (long)b <= (long)a,
                            0x2d => (long)b < (long)a,
                            _ => b != a,
                        };
                        stack.Push(t ? 1UL : 0UL);
                        break;
                    case 0x2f: pc += BitConverter.ToInt16(code, pc) + 2; break;
                    case 0x28: { short d = BitConverter.ToInt16(code, pc); pc += 2; if (stack.Pop() != 0) pc += d; break; }
                    case 0x92: { int r = (int)Uleb(code, ref pc); long off = Sleb(code, ref pc); stack.Push((ulong)((long)(r < regs.Length ? regs[r] : 0) + off)); break; }
                    case 0x96: break;
                    default: return false;
                }
            }
            if (stack.Count == 0) return false;
            result = stack.Pop();
            return true;
        }
        catch (Exception ex) when (ex is InvalidOperationException or ArgumentException or IndexOutOfRangeException or Symbols.BadFormatException)
        {
            return false;
        }
    }

    private static ulong Uleb(byte[] code, ref int pc)
    {
        var r = new Symbols.SpanReader(code, pc);
        ulong v = r.ULeb();
        pc = r.Position;
        return v;
    }

    private static long Sleb(byte[] code, ref int pc)
    {
        var r = new Symbols.SpanReader(code, pc);
        long v = r.SLeb();
        pc = r.Position;
        return v;
    }
}
