using Iced.Intel;

namespace LeakTools.Core.Tracing;

/// <summary>Where a trap of the allocation tracer sits, and what it means.</summary>
public enum TrapKind
{
    /// <summary>At the entry of free/realloc, in the trampoline (arguments in registers).</summary>
    Entry,
    /// <summary>After the allocator returned into the trampoline (result in rax, arguments saved on the stack).</summary>
    Return,
    /// <summary>An int3 at the function itself (fallback where a 5-byte jump cannot go).</summary>
    Site,
}

/// <summary>One hooked allocator entry point and its trampoline in the scratch area:
/// <code>
/// E: [int3]                          entry trap (free, realloc, reallocarray)
///    push rdi [, rsi [, rdx]] [sub rsp,8]   save the arguments (odd slot count keeps the ABI alignment)
///    call B
/// T: int3                            return trap: rax = result, arguments at [rsp]
///    add rsp, 8*slots
///    ret
/// B: displaced instructions (relocated: RIP-relative operands and branches fixed by Iced)
///    jmp site+displaced
/// </code>
/// free has only <c>E: int3</c> then B — or, in attach mode, a lock-free append of the pointer to a
/// log in the scratch data page (<see cref="FreeLog"/>), with an int3 only when the log is full:
/// frees then cost the target no stop at all. The function's entry becomes <c>jmp E</c> (a detour: one
/// stop per call, no single-stepping, and any number of threads can run through it at once), or an
/// int3 where 5 bytes cannot be replaced safely (the tracer then moves RIP to the trampoline).</summary>
public sealed class Hook
{
    public required AllocatorFunction Function { get; init; }
    public required bool Detour { get; init; }
    /// <summary>Original bytes at the site that the patch replaces (5 for a detour, 1 for int3).</summary>
    public required byte[] Original { get; init; }
    public required int DisplacedLength { get; init; }
    /// <summary>Offsets of the displaced instructions in the original code, and in B.</summary>
    public required int[] OriginalOffsets { get; init; }
    public required int[] BodyOffsets { get; init; }
    public ulong Entry { get; set; }
    public ulong EntryTrap { get; set; }     // 0 when none
    public ulong Stub { get; set; }          // first push (0 for free)
    public ulong Call { get; set; }
    public ulong ReturnTrap { get; set; }    // 0 for free
    public ulong Body { get; set; }
    public ulong End { get; set; }
    /// <summary>free with a free log: the int3 taken only when the log is full (0 otherwise).</summary>
    public ulong SlowTrap { get; set; }
    public int Slots { get; set; }
    public int Pushes { get; set; }
    public byte[] Code { get; set; } = Array.Empty<byte>();

    public ulong Site => Function.Address;
    public AllocatorKind Kind => Function.Kind;

    public byte[] Patch => Detour ? JmpRel32(Site, Entry) : new byte[] { 0xcc };

    public static int ArgumentCount(AllocatorKind kind) => kind switch
    {
        AllocatorKind.Malloc => 1,
        AllocatorKind.Calloc or AllocatorKind.Memalign or AllocatorKind.Realloc => 2,
        AllocatorKind.PosixMemalign or AllocatorKind.ReallocArray => 3,
        _ => 0,
    };

    public static bool HasEntryTrap(AllocatorKind kind) => kind is AllocatorKind.Free or AllocatorKind.Realloc or AllocatorKind.ReallocArray;

    public static byte[] JmpRel32(ulong from, ulong to)
    {
        long rel = (long)to - (long)(from + 5);
        var b = new byte[5];
        b[0] = 0xe9;
        BitConverter.TryWriteBytes(b.AsSpan(1), (int)rel);
        return b;
    }
}

/// <summary>The free log: a write index, the tracer's published read index and a ring of
/// {tag, pointer} slots in the scratch data page. A free reserves a position with lock xadd, stores
/// the pointer, then the tag position+1; the tracer takes a slot whose tag matches its position,
/// so it never writes the slots, only (now and then) the read index that bounds the writers.</summary>
public sealed class FreeLog
{
    public const int Capacity = 4096;
    public const int SlotSize = 16;
    public const int Size = 64 + Capacity * SlotSize;

    public FreeLog(ulong address) => Address = address;

    public ulong Address { get; }
    public ulong IndexAddress => Address;
    public ulong ReadAddress => Address + 8;
    public ulong SlotsAddress => Address + 64;
    public ulong SlotAddress(ulong position) => SlotsAddress + (position & (Capacity - 1)) * SlotSize;
}

/// <summary>Plans hooks from the target's code and lays their trampolines out in a scratch area.</summary>
public static class TrampolineBuilder
{
    public const int MaxCodePerHook = 128;

    private sealed class ListWriter : CodeWriter
    {
        public readonly List<byte> Bytes = new();
        public override void WriteByte(byte value) => Bytes.Add(value);
    }

    /// <summary>Decides detour or int3 for <paramref name="function"/> given its code bytes
    /// (<paramref name="code"/> starts at the function's address; as much of the body as is known),
    /// or returns null with a reason when it cannot be hooked.</summary>
    public static Hook? Plan(AllocatorFunction function, byte[] code, out string? problem)
    {
        problem = null;
        if (code.Length == 0 || code[0] == 0xcc)
        {
            problem = $"{function.Name} at 0x{function.Address:x} is already patched (another tracer's breakpoint, or a LeakTools session killed with -9)";
            return null;
        }
        var decoder = Decoder.Create(64, new ByteArrayCodeReader(code), function.Address);
        var prologue = new List<Instruction>();
        int length = 0;
        while (length < 5 && decoder.IP < function.Address + (ulong)code.Length)
        {
            decoder.Decode(out Instruction ins);
            if (ins.IsInvalid) break;
            prologue.Add(ins);
            length += ins.Length;
            if (ins.FlowControl is FlowControl.Return or FlowControl.UnconditionalBranch or FlowControl.IndirectBranch or FlowControl.Interrupt) break;
        }
        if (prologue.Count == 0)
        {
            problem = $"{function.Name}: cannot decode its first instruction";
            return null;
        }
        bool detour = length >= 5 && (function.Size == 0 || length <= function.Size) && !prologue.Any(i => i.FlowControl is FlowControl.Call or FlowControl.IndirectCall)
                      && !BranchesInto(function, code, length);
        List<Instruction> displaced = detour ? prologue : prologue.Take(1).ToList();
        if (displaced[0].FlowControl is FlowControl.Call or FlowControl.IndirectCall)
        {
            problem = $"{function.Name} starts with a call (profiling hooks): not hooked";
            return null;
        }
        int displacedLength = displaced.Sum(i => i.Length);
        int patch = detour ? 5 : 1;
        var offsets = new int[displaced.Count];
        int o = 0;
        for (int i = 0; i < displaced.Count; i++) { offsets[i] = o; o += displaced[i].Length; }
        return new Hook
        {
            Function = function,
            Detour = detour,
            Original = code.AsSpan(0, patch).ToArray(),
            DisplacedLength = displacedLength,
            OriginalOffsets = offsets,
            BodyOffsets = new int[displaced.Count],
            Code = Array.Empty<byte>(),
        };
    }

    /// <summary>True when some branch in the function targets the inside of its first
    /// <paramref name="length"/> bytes (the detour would cut that instruction in half).</summary>
    private static bool BranchesInto(AllocatorFunction function, byte[] code, int length)
    {
        var decoder = Decoder.Create(64, new ByteArrayCodeReader(code), function.Address);
        ulong end = function.Address + (ulong)(function.Size > 0 ? Math.Min(function.Size, code.Length) : Math.Min(code.Length, 4096));
        ulong lo = function.Address + 1, hi = function.Address + (ulong)length;
        while (decoder.IP < end)
        {
            decoder.Decode(out Instruction ins);
            if (ins.IsInvalid) continue;
            if (ins.Op0Kind is OpKind.NearBranch64 or OpKind.NearBranch32 or OpKind.NearBranch16)
            {
                ulong target = ins.NearBranchTarget;
                if (target >= lo && target < hi) return true;
            }
        }
        return false;
    }

    /// <summary>Lays out <paramref name="hook"/>'s trampoline at <paramref name="at"/> and fills its
    /// addresses and code; <paramref name="prologue"/> is the code at the site (for re-decoding).</summary>
    public static void Layout(Hook hook, ulong at, byte[] prologue, FreeLog? freeLog = null)
    {
        var code = new List<byte>();
        hook.Entry = at;
        bool free = hook.Kind == AllocatorKind.Free;
        if (free && freeLog is not null)
        {
            LayoutLoggedFree(hook, at, prologue, freeLog);
            return;
        }
        if (Hook.HasEntryTrap(hook.Kind))
        {
            hook.EntryTrap = at;
            code.Add(0xcc);
        }
        if (!free)
        {
            int args = Hook.ArgumentCount(hook.Kind);
            int slots = args % 2 == 1 ? args : args + 1;
            hook.Slots = slots;
            hook.Stub = at + (ulong)code.Count;
            byte[] pushes = { 0x57, 0x56, 0x52 }; // push rdi, rsi, rdx
            for (int i = 0; i < args; i++) code.Add(pushes[i]);
            hook.Pushes = args;
            if (slots > args) code.AddRange(new byte[] { 0x48, 0x83, 0xec, 0x08 });
            hook.Call = at + (ulong)code.Count;
            code.AddRange(new byte[] { 0xe8, 0, 0, 0, 0 }); // call B, fixed below
            hook.ReturnTrap = at + (ulong)code.Count;
            code.Add(0xcc);
            code.AddRange(new byte[] { 0x48, 0x83, 0xc4, (byte)(8 * slots) });
            code.Add(0xc3);
        }
        hook.Body = at + (ulong)code.Count;
        if (!free)
        {
            int callAt = (int)(hook.Call - at);
            BitConverter.TryWriteBytes(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(code).Slice(callAt + 1, 4), (int)((long)hook.Body - (long)(hook.Call + 5)));
        }

        List<Instruction> instructions = Displaced(hook, prologue);
        var (bytes, offsets) = Encode(hook, instructions, hook.Body);
        for (int i = 0; i < hook.BodyOffsets.Length; i++) hook.BodyOffsets[i] = (int)offsets[i];
        code.AddRange(bytes);
        hook.Code = code.ToArray();
        hook.End = at + (ulong)code.Count;
    }

    /// <summary>The displaced instructions, then the jump back behind them.</summary>
    private static List<Instruction> Displaced(Hook hook, byte[] prologue)
    {
        var decoder = Decoder.Create(64, new ByteArrayCodeReader(prologue), hook.Site);
        var instructions = new List<Instruction>();
        int taken = 0;
        while (taken < hook.DisplacedLength)
        {
            decoder.Decode(out Instruction ins);
            instructions.Add(ins);
            taken += ins.Length;
        }
        instructions.Add(Instruction.CreateBranch(Code.Jmp_rel32_64, hook.Site + (ulong)hook.DisplacedLength));
        return instructions;
    }

    private static (List<byte> Bytes, uint[] Offsets) Encode(Hook hook, List<Instruction> instructions, ulong at)
    {
        var writer = new ListWriter();
        var block = new InstructionBlock(writer, instructions, at);
        if (!BlockEncoder.TryEncode(64, block, out string? error, out BlockEncoderResult result, BlockEncoderOptions.ReturnNewInstructionOffsets))
        {
            throw new LeakToolsException(FailureKind.NotSupported, "CannotRelocate",
                $"Cannot relocate the first instructions of {hook.Function.Name} to 0x{at:x}: {error}", hook.Function.Name);
        }
        return (writer.Bytes, result.NewInstructionOffsets);
    }

    /// <summary>free that appends its pointer to the free log (lock xadd on the write index; rax,
    /// rcx, rdx and the flags are free at a function's entry), trapping only when the log is full:
    /// <code>
    /// E: test rdi,rdi ; je B
    ///    mov eax,1 ; lock xadd [Index],rax        rax = my position
    ///    mov rcx,rax ; sub rcx,[Read] ; cmp rcx,Capacity ; jae SLOW
    ///    mov rcx,rax ; and ecx,Capacity-1 ; shl rcx,4 ; lea rdx,[Slots] ; add rcx,rdx
    ///    mov [rcx+8],rdi ; inc rax ; mov [rcx],rax ; jmp B     pointer first, then the tag position+1
    /// SLOW: int3 ; jmp B                          the tracer records this free itself
    /// B: displaced instructions ; jmp site+n
    /// </code></summary>
    private static void LayoutLoggedFree(Hook hook, ulong at, byte[] prologue, FreeLog log)
    {
        // Synthetic instructions get label addresses that BlockEncoder retargets.
        const ulong label = 0xffff_f000_0000_0000UL;
        ulong bodyLabel = hook.Site, slowLabel = label + 100;
        Instruction I(Instruction i, ulong ip) { i.IP = ip; return i; }
        var xadd = Instruction.Create(Code.Xadd_rm64_r64, new MemoryOperand(Register.RIP, (long)log.IndexAddress), Register.RAX);
        xadd.HasLockPrefix = true;
        var list = new List<Instruction>
        {
            I(Instruction.Create(Code.Test_rm64_r64, Register.RDI, Register.RDI), label + 1),
            I(Instruction.CreateBranch(Code.Je_rel32_64, bodyLabel), label + 2),
            I(Instruction.Create(Code.Mov_r32_imm32, Register.EAX, 1), label + 3),
            I(xadd, label + 4),
            I(Instruction.Create(Code.Mov_r64_rm64, Register.RCX, Register.RAX), label + 5),
            I(Instruction.Create(Code.Sub_r64_rm64, Register.RCX, new MemoryOperand(Register.RIP, (long)log.ReadAddress)), label + 6),
            I(Instruction.Create(Code.Cmp_rm64_imm32, Register.RCX, FreeLog.Capacity), label + 7),
            I(Instruction.CreateBranch(Code.Jae_rel32_64, slowLabel), label + 8),
            I(Instruction.Create(Code.Mov_r64_rm64, Register.RCX, Register.RAX), label + 9),
            I(Instruction.Create(Code.And_rm32_imm32, Register.ECX, FreeLog.Capacity - 1), label + 10),
            I(Instruction.Create(Code.Shl_rm64_imm8, Register.RCX, 4), label + 11),
            I(Instruction.Create(Code.Lea_r64_m, Register.RDX, new MemoryOperand(Register.RIP, (long)log.SlotsAddress)), label + 12),
            I(Instruction.Create(Code.Add_r64_rm64, Register.RCX, Register.RDX), label + 13),
            I(Instruction.Create(Code.Mov_rm64_r64, new MemoryOperand(Register.RCX, 8, 1), Register.RDI), label + 14),
            I(Instruction.Create(Code.Inc_rm64, Register.RAX), label + 15),
            I(Instruction.Create(Code.Mov_rm64_r64, new MemoryOperand(Register.RCX), Register.RAX), label + 16),
            I(Instruction.CreateBranch(Code.Jmp_rel32_64, bodyLabel), label + 17),
            I(Instruction.Create(Code.Int3), slowLabel),
            I(Instruction.CreateBranch(Code.Jmp_rel32_64, bodyLabel), label + 101),
        };
        int prefix = list.Count;
        List<Instruction> displaced = Displaced(hook, prologue);
        list.AddRange(displaced);
        var (bytes, offsets) = Encode(hook, list, at);
        hook.SlowTrap = at + offsets[prefix - 2];
        hook.Body = at + offsets[prefix];
        for (int i = 0; i < hook.BodyOffsets.Length; i++) hook.BodyOffsets[i] = (int)(offsets[prefix + i] - offsets[prefix]);
        hook.Code = bytes.ToArray();
        hook.End = at + (ulong)bytes.Count;
    }
}
