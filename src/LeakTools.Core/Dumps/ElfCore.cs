using System.Buffers.Binary;

namespace LeakTools.Core.Dumps;

/// <summary>ELF constants and note layouts of x86-64 Linux cores, shared by the writer and the reader.</summary>
public static class ElfCore
{
    public const ushort ET_CORE = 4;
    public const ushort EM_X86_64 = 62;
    public const uint PT_LOAD = 1;
    public const uint PT_NOTE = 4;
    public const uint PF_X = 1, PF_W = 2, PF_R = 4;

    public const uint NT_PRSTATUS = 1;
    public const uint NT_PRFPREG = 2;
    public const uint NT_PRPSINFO = 3;
    public const uint NT_AUXV = 6;
    public const uint NT_X86_XSTATE = 0x202;
    public const uint NT_SIGINFO = 0x53494749;
    public const uint NT_FILE = 0x46494c45;
    /// <summary>LeakTools' own note (owner "LEAKTOOLS"): key=value lines saying how the core was made.</summary>
    public const uint NT_LEAKTOOLS_INFO = 0x4c54;
    public const string LeakToolsNoteName = "LEAKTOOLS";

    public const int EhdrSize = 64;
    public const int PhdrSize = 56;
    public const int PageSize = 4096;

    /// <summary>sizeof(struct elf_prstatus) on x86-64; pr_reg starts at 112.</summary>
    public const int PrstatusSize = 336;
    public const int PrstatusRegOffset = 112;
    /// <summary>sizeof(struct elf_prpsinfo) on x86-64.</summary>
    public const int PrpsinfoSize = 136;
    public const int SiginfoSize = 128;

    public static long AlignUp(long value, long alignment) => (value + alignment - 1) & ~(alignment - 1);

    /// <summary>Where the notes start: after the ELF header and one PT_NOTE plus the PT_LOADs.</summary>
    public static long NotesOffset(int segmentCount) => EhdrSize + (long)PhdrSize * (segmentCount + 1);

    /// <summary>The ELF header and program headers of an x86-64 core: one PT_NOTE of
    /// <paramref name="notesLength"/> bytes at <see cref="NotesOffset"/>, then a PT_LOAD per segment.</summary>
    public static byte[] Headers(IReadOnlyList<CoreSegment> segments, int notesLength)
    {
        var (ehdr, phdrs) = HeaderParts(segments, EhdrSize, NotesOffset(segments.Count), notesLength);
        return [.. ehdr, .. phdrs];
    }

    /// <summary>The ELF header (pointing at program headers at <paramref name="phoff"/>) and the
    /// program headers: a PT_NOTE at <paramref name="notesOffset"/>, then a PT_LOAD per segment.
    /// Program headers and notes may sit anywhere in the file (gcore puts its notes last).</summary>
    public static (byte[] Ehdr, byte[] Phdrs) HeaderParts(IReadOnlyList<CoreSegment> segments, long phoff, long notesOffset, int notesLength)
    {
        byte[] h = new byte[EhdrSize];
        Span<byte> e = h;
        e[0] = 0x7f; e[1] = (byte)'E'; e[2] = (byte)'L'; e[3] = (byte)'F';
        e[4] = 2; e[5] = 1; e[6] = 1; // ELFCLASS64, little endian, EV_CURRENT; OSABI SYSV
        BinaryPrimitives.WriteUInt16LittleEndian(e[16..], ET_CORE);
        BinaryPrimitives.WriteUInt16LittleEndian(e[18..], EM_X86_64);
        BinaryPrimitives.WriteUInt32LittleEndian(e[20..], 1);
        BinaryPrimitives.WriteInt64LittleEndian(e[32..], phoff);                // e_phoff
        BinaryPrimitives.WriteUInt16LittleEndian(e[52..], EhdrSize);            // e_ehsize
        BinaryPrimitives.WriteUInt16LittleEndian(e[54..], PhdrSize);            // e_phentsize
        BinaryPrimitives.WriteUInt16LittleEndian(e[56..], (ushort)Math.Min(segments.Count + 1, 0xffff));
        BinaryPrimitives.WriteUInt16LittleEndian(e[58..], 64);                  // e_shentsize
        byte[] ph = new byte[PhdrSize * (segments.Count + 1)];
        Span<byte> p = ph;
        WritePhdr(p, PT_NOTE, 0, notesOffset, 0, notesLength, notesLength, 4);
        for (int i = 0; i < segments.Count; i++)
        {
            CoreSegment s = segments[i];
            WritePhdr(p[((i + 1) * PhdrSize)..], PT_LOAD, s.Flags, s.FileOffset, s.VirtualAddress, s.FileSize, (long)s.MemorySize, PageSize);
        }
        return (h, ph);
    }

    private static void WritePhdr(Span<byte> p, uint type, uint flags, long offset, ulong vaddr, long filesz, long memsz, long align)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(p, type);
        BinaryPrimitives.WriteUInt32LittleEndian(p[4..], flags);
        BinaryPrimitives.WriteInt64LittleEndian(p[8..], offset);
        BinaryPrimitives.WriteUInt64LittleEndian(p[16..], vaddr);
        BinaryPrimitives.WriteUInt64LittleEndian(p[24..], 0);
        BinaryPrimitives.WriteInt64LittleEndian(p[32..], filesz);
        BinaryPrimitives.WriteInt64LittleEndian(p[40..], memsz);
        BinaryPrimitives.WriteInt64LittleEndian(p[48..], align);
    }
}
