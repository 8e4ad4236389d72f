namespace LeakTools.Core.Symbols.Dwarf;

/// <summary>DW_FORM_* values (DWARF 2-5 and the GNU extensions).</summary>
internal static class DwarfForm
{
    public const ulong Addr = 0x01, Block2 = 0x03, Block4 = 0x04, Data2 = 0x05, Data4 = 0x06, Data8 = 0x07, String = 0x08,
        Block = 0x09, Block1 = 0x0a, Data1 = 0x0b, Flag = 0x0c, Sdata = 0x0d, Strp = 0x0e, Udata = 0x0f, RefAddr = 0x10,
        Ref1 = 0x11, Ref2 = 0x12, Ref4 = 0x13, Ref8 = 0x14, RefUdata = 0x15, Indirect = 0x16, SecOffset = 0x17,
        Exprloc = 0x18, FlagPresent = 0x19, Strx = 0x1a, Addrx = 0x1b, RefSup4 = 0x1c, StrpSup = 0x1d, Data16 = 0x1e,
        LineStrp = 0x1f, RefSig8 = 0x20, ImplicitConst = 0x21, Loclistx = 0x22, Rnglistx = 0x23, RefSup8 = 0x24,
        Strx1 = 0x25, Strx2 = 0x26, Strx3 = 0x27, Strx4 = 0x28, Addrx1 = 0x29, Addrx2 = 0x2a, Addrx3 = 0x2b, Addrx4 = 0x2c,
        GnuAddrIndex = 0x1f01, GnuStrIndex = 0x1f02, GnuRefAlt = 0x1f20, GnuStrpAlt = 0x1f21;

    /// <summary>The encoded size of a form, or -1 when it varies (LEB128, strings, blocks, indirect).</summary>
    public static int FixedSize(ulong form, int addressSize, bool is64) => form switch
    {
        FlagPresent or ImplicitConst => 0,
        Data1 or Ref1 or Flag or Strx1 or Addrx1 => 1,
        Data2 or Ref2 or Strx2 or Addrx2 => 2,
        Strx3 or Addrx3 => 3,
        Data4 or Ref4 or Strx4 or Addrx4 or RefSup4 => 4,
        Data8 or Ref8 or RefSig8 or RefSup8 => 8,
        Data16 => 16,
        Addr => addressSize,
        Strp or LineStrp or SecOffset or StrpSup or GnuRefAlt or GnuStrpAlt => is64 ? 8 : 4,
        _ => -1, // RefAddr depends on the version; LEB128 forms, strings and blocks vary
    };
}

/// <summary>The DW_AT_* and DW_TAG_* values the symbolizer reads.</summary>
internal static class DwarfName
{
    public const ushort AtName = 0x03, AtStmtList = 0x10, AtLowPc = 0x11, AtHighPc = 0x12, AtCompDir = 0x1b,
        AtAbstractOrigin = 0x31, AtSpecification = 0x47, AtRanges = 0x55, AtCallColumn = 0x57, AtCallFile = 0x58,
        AtCallLine = 0x59, AtLinkageName = 0x6e, AtStrOffsetsBase = 0x72, AtAddrBase = 0x73, AtRnglistsBase = 0x74,
        AtMipsLinkageName = 0x2007, AtGnuRangesBase = 0x2132, AtGnuAddrBase = 0x2133;

    public const ushort TagEntryPoint = 0x03, TagInlinedSubroutine = 0x1d, TagSubprogram = 0x2e;
}

/// <summary>What kind of value an attribute holds, after its form is decoded.</summary>
internal enum FormClass : byte
{
    None,
    Address,
    AddressIndex,
    Constant,
    SignedConstant,
    Flag,
    Reference,        // absolute offset in .debug_info
    StrOffset,        // .debug_str
    LineStrOffset,    // .debug_line_str
    StrIndex,         // index into .debug_str_offsets
    InlineString,     // offset of the string in .debug_info
    SecOffset,
    RngListIndex,
    Unsupported,      // supplementary / alternate files (dwz), type signatures
}

internal struct AttrValue
{
    public ulong Value;
    public FormClass Class;
    public ulong Form;

    public readonly bool IsPresent => Class != FormClass.None;
}
