using System.Buffers.Binary;
using LeakTools.Core.Symbols;
using LeakTools.Tests.Shared;
using Xunit;
using Xunit.Abstractions;

namespace LeakTools.Core.Tests.Symbols;

/// <summary>The ELF/DWARF readers on checked-in binaries (tests/samples/symbols, made by its
/// regenerate.sh) against the addr2line and eu-addr2line output recorded beside them: DWARF 2, 4
/// and 5, C++, zlib- and zstd-compressed debug sections, a stripped file, and bad input.</summary>
public sealed class SymbolSampleTests(ITestOutputHelper output)
{
    private static string Sample(string name) => SymbolSamples.Path(name);

    [Theory]
    [InlineData("dwarf5-O2.elf", "dwarf5-O2")]
    [InlineData("dwarf4-O2.elf", "dwarf4-O2")]
    [InlineData("dwarf2-O1.elf", "dwarf2-O1")]
    [InlineData("cpp-O2.elf", "cpp-O2")]
    [InlineData("zlib-dwarf5.elf", "dwarf5-O2")]
    [InlineData("zstd-dwarf5.elf", "dwarf5-O2")]
    public void Matches_the_recorded_addr2line_output(string file, string expected)
    {
        using var cache = new SymbolCache(new SymbolizerOptions { DebugDirectories = Array.Empty<string>() });
        ModuleSymbolizer module = cache.GetModule(Sample(file));
        Assert.Equal(DebugInfoSource.Embedded, module.DebugSource);
        var peer = Addr2LineParity.ParseAddr2Line(File.ReadAllText(Sample(expected + ".addr2line.txt")));
        var eu = Addr2LineParity.ParseEuAddr2Line(File.ReadAllText(Sample(expected + ".eu-addr2line.txt")));
        ParityResult r = Addr2LineParity.Compare(file, module, peer);
        Addr2LineParity.Explain(r, module, peer, _ => eu);
        output.WriteLine(r.ToString());
        Assert.True(r.Addresses > 80);
        Assert.Empty(r.Unexplained);
        Assert.True(r.Addresses - r.FunctionMatches <= 3 && r.Addresses - r.LineMatches <= 3, r.ToString()); // the explained binutils quirks
        Assert.Empty(module.Problems);
    }

    [Fact]
    public void Inline_chains_carry_call_sites_innermost_first()
    {
        using var cache = new SymbolCache(new SymbolizerOptions { DebugDirectories = Array.Empty<string>() });
        ModuleSymbolizer module = cache.GetModule(Sample("dwarf5-O2.elf"));
        var peer = Addr2LineParity.ParseAddr2Line(File.ReadAllText(Sample("dwarf5-O2.addr2line.txt")));
        var (address, frames) = peer.First(p => p.Value.Count >= 3 && p.Value[0].File!.EndsWith("symbols-inline.h")); // mix32 <- mix_twice <- caller
        IReadOnlyList<SymbolFrame> ours = module.Resolve(address).Frames;
        Assert.Equal(frames.Count, ours.Count);
        Assert.All(ours.SkipLast(1), f => Assert.True(f.IsInline));
        Assert.False(ours[^1].IsInline);
        Assert.Equal(frames.Select(f => f.Function), ours.Select(f => f.Function));
        Assert.Equal(frames.Select(f => f.Line), ours.Select(f => f.Line));
        Assert.EndsWith("symbols-inline.h", ours[0].File);
    }

    [Fact]
    public void Cpp_names_are_demangled()
    {
        using var cache = new SymbolCache(new SymbolizerOptions { DebugDirectories = Array.Empty<string>() });
        ModuleSymbolizer module = cache.GetModule(Sample("cpp-O2.elf"));
        List<ElfSymbol> symbols = module.AllSymbols();
        ElfSymbolReader.Demangle(symbols);
        ElfSymbol work = Assert.Single(symbols, s => s.Name == "_ZN9leaktools7fixture4workEi");
        Assert.Equal("leaktools::fixture::work(int)", work.Demangled);
        Assert.Equal("leaktools::fixture::work(int)", module.Resolve(work.Address).Frames[^1].Function);
        Assert.Contains(symbols, s => s.Demangled == "operator new(unsigned long)@plt");
    }

    [Fact]
    public void A_stripped_file_names_functions_from_dynsym_and_plt_without_lines()
    {
        using var cache = new SymbolCache(new SymbolizerOptions { DebugDirectories = Array.Empty<string>() });
        ModuleSymbolizer module = cache.GetModule(Sample("stripped-dwarf5.elf"));
        Assert.False(module.HasLineInfo);
        List<ElfSymbol> symbols = module.AllSymbols();
        Assert.DoesNotContain(symbols, s => s.Table == ".symtab");
        ElfSymbol plt = Assert.Single(symbols, s => s.Name == "malloc@plt");
        SymbolFrame frame = Assert.Single(module.Resolve(plt.Address + 6).Frames);
        Assert.Equal("malloc@plt", frame.Function);
        Assert.Equal(plt.Address, frame.FunctionStart);
        Assert.Null(frame.Line);
        // An executable's own functions are not in .dynsym: stripped, they resolve to nothing.
        using var unstripped = ElfFile.Open(Sample("dwarf5-O2.elf"));
        ElfSymbol callsLeaf = Assert.Single(ElfSymbolReader.Read(unstripped), s => s.Name == "calls_leaf");
        SymbolFrame unknown = Assert.Single(module.Resolve(callsLeaf.Address).Frames);
        Assert.Null(unknown.Function);
        Assert.Null(unknown.File);
    }

    [Fact]
    public void Plt_stubs_match_objdump()
    {
        using var elf = ElfFile.Open(Sample("dwarf5-O2.elf"));
        var plt = ElfSymbolReader.Read(elf).Where(s => s.Table == ".plt").ToDictionary(s => s.Address, s => s.Name);
        if (!LinuxFactAttribute.ToolExists("objdump")) return;
        string dump = Tools.Run("objdump", "-d", "-j", ".plt", "-j", ".plt.got", "-j", ".plt.sec", Sample("dwarf5-O2.elf"));
        int checkedStubs = 0;
        foreach (string line in dump.Split('\n'))
        {
            // 0000000000001030 <free@plt>:
            if (!line.EndsWith("@plt>:", StringComparison.Ordinal)) continue;
            ulong address = ulong.Parse(line[..16], System.Globalization.NumberStyles.HexNumber);
            string name = line[18..^2];
            Assert.Equal(name, plt[address]);
            checkedStubs++;
        }
        Assert.True(checkedStubs >= 10, $"{checkedStubs} stubs");
    }

    [Fact]
    public void Bad_files_give_clear_errors()
    {
        string dir = Directory.CreateTempSubdirectory("leaktools-badelf").FullName;
        try
        {
            string text = Path.Combine(dir, "text");
            File.WriteAllText(text, "#!/bin/sh\necho this is a script, not an ELF file, and it is long enough\n");
            var notElf = Assert.Throws<LeakToolsException>(() => ElfFile.Open(text));
            Assert.Equal(("NotAnElfFile", FailureKind.InvalidData), (notElf.ErrorId, notElf.Kind));
            Assert.Contains(text, notElf.Message);

            var missing = Assert.Throws<LeakToolsException>(() => ElfFile.Open(Path.Combine(dir, "nothing")));
            Assert.Equal(("FileNotFound", FailureKind.NotFound), (missing.ErrorId, missing.Kind));

            byte[] bytes = File.ReadAllBytes(Sample("dwarf5-O2.elf"));
            string truncated = Path.Combine(dir, "truncated");
            File.WriteAllBytes(truncated, bytes[..4000]);
            var cut = Assert.Throws<LeakToolsException>(() => ElfFile.Open(truncated));
            Assert.Equal(("CorruptElf", FailureKind.InvalidData), (cut.ErrorId, cut.Kind));

            byte[] elf32 = (byte[])bytes.Clone();
            elf32[4] = 1;
            var unsupported = Assert.Throws<LeakToolsException>(() => ElfFile.FromBytes(elf32, "elf32"));
            Assert.Equal(("UnsupportedElf", FailureKind.NotSupported), (unsupported.ErrorId, unsupported.Kind));

            string empty = Path.Combine(dir, "empty");
            File.WriteAllBytes(empty, Array.Empty<byte>());
            Assert.Equal("NotAnElfFile", Assert.Throws<LeakToolsException>(() => ElfFile.Open(empty)).ErrorId);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [LinuxFact("objcopy")]
    public void Separate_debug_files_are_found_by_debuglink_with_its_crc_checked_and_by_path()
    {
        Assert.Equal(0xCBF43926u, Crc32.Append(0, "123456789"u8)); // the CRC-32 check value
        string dir = Directory.CreateTempSubdirectory("leaktools-debuglink").FullName;
        try
        {
            string binary = Path.Combine(dir, "prog");
            string debug = Path.Combine(dir, "prog.dbg");
            Tools.Run("objcopy", "--only-keep-debug", Sample("dwarf5-O2.elf"), debug);
            Tools.Run("objcopy", "--strip-all", "--add-gnu-debuglink=" + debug, Sample("dwarf5-O2.elf"), binary);
            using (var elf = ElfFile.Open(binary))
            {
                Assert.Equal("prog.dbg", elf.DebugLink);
                Assert.Equal(Crc32.OfFile(debug), elf.DebugLinkCrc);
            }
            var none = new SymbolizerOptions { DebugDirectories = Array.Empty<string>() };
            using (var cache = new SymbolCache(none))
            {
                ModuleSymbolizer m = cache.GetModule(binary);
                Assert.Equal(DebugInfoSource.DebugLink, m.DebugSource);
                Assert.True(m.HasLineInfo);
            }

            // Same build-id, one byte changed: the CRC no longer matches and the file is refused.
            byte[] bytes = File.ReadAllBytes(debug);
            bytes[^1] ^= 0xff;
            File.WriteAllBytes(debug, bytes);
            using (var cache = new SymbolCache(none))
            {
                ModuleSymbolizer m = cache.GetModule(binary);
                Assert.Equal(DebugInfoSource.None, m.DebugSource);
                Assert.False(m.HasLineInfo);
            }

            // ROOT/<module path>.debug, from a private debug root.
            string root = Path.Combine(dir, "root");
            string byPath = root + binary + ".debug";
            Directory.CreateDirectory(Path.GetDirectoryName(byPath)!);
            Tools.Run("objcopy", "--only-keep-debug", Sample("dwarf5-O2.elf"), byPath);
            File.Delete(debug);
            using (var cache = new SymbolCache(new SymbolizerOptions { DebugDirectories = new[] { root } }))
            {
                ModuleSymbolizer m = cache.GetModule(binary);
                Assert.Equal(DebugInfoSource.DebugPath, m.DebugSource);
                Assert.Equal(byPath, m.DebugFile);
                Assert.True(m.Resolve(0x1430).HasLine);
            }
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Build_id_and_segments_are_read()
    {
        using var elf = ElfFile.Open(Sample("dwarf5-O2.elf"));
        Assert.Matches("^[0-9a-f]{40}$", elf.BuildId);
        Assert.Equal(ElfFile.ET_DYN, elf.Type);
        Assert.True(elf.TryFileOffsetToAddress(0x1040, out ulong address));
        Assert.Equal(0x1040UL, address);
        ushort machine = BinaryPrimitives.ReadUInt16LittleEndian(File.ReadAllBytes(Sample("dwarf5-O2.elf")).AsSpan(18));
        Assert.Equal(machine, elf.Machine);
    }
}
