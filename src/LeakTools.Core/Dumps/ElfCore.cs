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
}
