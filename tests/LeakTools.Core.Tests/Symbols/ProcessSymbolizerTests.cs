using System.Globalization;
using LeakTools.Core.Symbols;
using LeakTools.Tests.Shared;
using Xunit;

namespace LeakTools.Core.Tests.Symbols;

/// <summary>Runtime addresses of live fixture processes: PIE and non-PIE executables, libc, a
/// deleted executable, the vdso, return addresses, and addresses outside every mapping.</summary>
public sealed class ProcessSymbolizerTests
{
    private static readonly SymbolCache s_cache = new(new SymbolizerOptions());

    private static int LineOf(string marker) =>
        File.ReadAllLines(Path.Combine(SymbolFixtures.SourceDir, "symbols-main.c")).Select((l, i) => (l, i)).First(x => x.l.Contains(marker)).i + 1;

    private static ulong NmAddress(string binary, string name)
    {
        foreach (string line in Tools.Run("nm", binary).Split('\n'))
        {
            string[] p = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (p.Length == 3 && p[2] == name) return ulong.Parse(p[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        }
        throw new InvalidOperationException($"{name} not in {binary}");
    }

    [LinuxTheory("gcc", "nm", "addr2line")]
    [InlineData("-O2 -g", "live-pie")]
    [InlineData("-O2 -g -fno-pie -no-pie", "live-nopie")]
    [InlineData("-O0 -gdwarf-4", "live-O0")]
    public void Executable_function_and_return_address_resolve_to_their_lines(string flags, string name)
    {
        string binary = SymbolFixtures.Build(flags, name);
        using var fx = FixtureProcess.Start(binary);
        var process = ProcessSymbolizer.ForProcess(fx.Pid, s_cache);

        StackFrame leaf = Assert.Single(process.Resolve(fx.Hex("leaf")));
        Assert.Equal(binary, leaf.Module);
        Assert.Equal(NmAddress(binary, "leaf_function"), leaf.ModuleOffset);
        Assert.Equal("leaf_function", leaf.Function);
        Assert.Equal(0UL, leaf.Offset);
        PeerFrame peer = Addr2LineParity.RunAddr2Line(binary, new[] { leaf.ModuleOffset }).Single().Value[^1];
        Assert.Equal(peer.Line, leaf.Line);
        Assert.Equal(peer.File, leaf.File);

        // caller_ret is the return address of calls_leaf's call: with address-1 it names the call's line.
        List<StackFrame> stack = process.ResolveStack(new[] { fx.Hex("leaf"), fx.Hex("caller_ret") });
        StackFrame caller = stack[^1];
        Assert.Equal("calls_leaf", caller.Function);
        Assert.Equal(LineOf("CALL_LINE"), caller.Line);
        Assert.Equal(fx.Hex("caller_ret"), caller.Address);
        Assert.Equal(caller.ModuleOffset - NmAddress(binary, "calls_leaf"), caller.Offset);
    }

    [LinuxFact("gcc", "addr2line")]
    public void Libc_address_resolves_through_the_build_id_debug_file()
    {
        using var fx = FixtureProcess.Start(SymbolFixtures.Build("-O2 -g", "live-pie"));
        var process = ProcessSymbolizer.ForProcess(fx.Pid, s_cache);
        List<StackFrame> frames = process.Resolve(fx.Hex("malloc"));
        StackFrame malloc = frames[^1];
        Assert.EndsWith("/libc.so.6", malloc.Module);
        PeerFrame peer = Addr2LineParity.RunAddr2Line(malloc.Module, new[] { malloc.ModuleOffset }).Single().Value[^1];
        Assert.Equal(peer.Function, malloc.Function);
        Assert.Contains("malloc", malloc.Function);
        Assert.Equal(peer.File, malloc.File);
        Assert.Equal(peer.Line, malloc.Line);
    }

    [LinuxFact("gcc", "addr2line")]
    public void A_deleted_executable_is_read_through_map_files()
    {
        string dir = Directory.CreateTempSubdirectory("leaktools-deleted").FullName;
        try
        {
            string copy = Path.Combine(dir, "deleted-fixture");
            string original = SymbolFixtures.Build("-O2 -g", "live-pie");
            File.Copy(original, copy);
            using var fx = FixtureProcess.Start(copy);
            File.Delete(copy);
            var process = ProcessSymbolizer.ForProcess(fx.Pid, new SymbolCache(new SymbolizerOptions()));
            StackFrame leaf = Assert.Single(process.Resolve(fx.Hex("leaf")));
            Assert.Equal(copy + " (deleted)", leaf.Module);
            Assert.Equal("leaf_function", leaf.Function);
            Assert.Equal(Addr2LineParity.RunAddr2Line(original, new[] { leaf.ModuleOffset }).Single().Value[^1].Line, leaf.Line);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [LinuxFact("gcc", "nm")]
    public void The_vdso_is_read_from_process_memory()
    {
        using var fx = FixtureProcess.Start(SymbolFixtures.Build("-O2 -g", "live-pie"));
        string maps = File.ReadAllText($"/proc/{fx.Pid}/maps");
        string line = maps.Split('\n').First(l => l.EndsWith("[vdso]", StringComparison.Ordinal));
        string[] range = line.Split(' ')[0].Split('-');
        ulong start = ulong.Parse(range[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        ulong end = ulong.Parse(range[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture);

        // The reference: nm -D on the vdso image dumped from the process.
        string image = Path.GetTempFileName();
        try
        {
            using (var mem = new FileStream($"/proc/{fx.Pid}/mem", FileMode.Open, FileAccess.Read))
            {
                mem.Seek((long)start, SeekOrigin.Begin);
                var bytes = new byte[end - start];
                mem.ReadExactly(bytes);
                File.WriteAllBytes(image, bytes);
            }
            var symbols = Tools.Run("nm", "-D", "--defined-only", image).Split('\n', StringSplitOptions.RemoveEmptyEntries)
                .Select(l => l.Split(' ')).Where(p => p.Length == 3 && p[1] is "T" or "W")
                .Select(p => (Address: ulong.Parse(p[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture), Name: p[2].Split('@')[0])).ToList();
            var gettime = symbols.First(s => s.Name.Contains("clock_gettime"));
            var names = symbols.Where(s => s.Address == gettime.Address).Select(s => s.Name).ToList();

            var process = ProcessSymbolizer.ForProcess(fx.Pid, s_cache);
            StackFrame frame = Assert.Single(process.Resolve(start + gettime.Address + 2));
            Assert.Equal("[vdso]", frame.Module);
            Assert.Contains(frame.Function, names);
            Assert.Equal(2UL, frame.Offset);
        }
        finally
        {
            File.Delete(image);
        }
    }

    [LinuxFact("gcc")]
    public void An_address_outside_every_mapping_gives_a_frame_with_empty_module()
    {
        using var fx = FixtureProcess.Start(SymbolFixtures.Build("-O2 -g", "live-pie"));
        var process = ProcessSymbolizer.ForProcess(fx.Pid, s_cache);
        StackFrame frame = Assert.Single(process.Resolve(0x10));
        Assert.Equal("", frame.Module);
        Assert.Null(frame.Function);
        Assert.Equal(0x10UL, frame.Address);
        Assert.Equal("0x10", frame.ToString());
    }

    [LinuxFact("gcc")]
    public void A_process_that_exits_after_its_maps_were_read_still_resolves_from_its_files()
    {
        ProcessSymbolizer process;
        ulong leaf;
        using (var fx = FixtureProcess.Start(SymbolFixtures.Build("-O2 -g", "live-pie")))
        {
            process = ProcessSymbolizer.ForProcess(fx.Pid, new SymbolCache(new SymbolizerOptions()));
            leaf = fx.Hex("leaf");
        } // killed and reaped here
        Assert.Equal("leaf_function", Assert.Single(process.Resolve(leaf)).Function);
        StackFrame vdso = process.Resolve(process.Mappings.First(m => m.Path == "[vdso]").Start)[0];
        Assert.Equal("[vdso]", vdso.Module); // its memory is gone: a frame without function, not an exception
        Assert.Contains(process.Problems, p => p.Contains("[vdso]"));
    }

    [LinuxFact]
    public void A_missing_process_is_ProcessNotFound()
    {
        var ex = Assert.Throws<ProcessNotFoundException>(() => ProcessSymbolizer.ForProcess(999999, s_cache));
        Assert.Equal("ProcessNotFound", ex.ErrorId);
    }

    [Fact]
    public void Core_file_style_mappings_resolve_without_a_process()
    {
        // What a core's NT_FILE note gives: start, end, file offset, path.
        string binary = SymbolFixtures.Build("-O2 -g -fno-pie -no-pie", "live-nopie");
        using var elf = ElfFile.Open(binary);
        Assert.True(elf.TryFirstLoad(out ElfSegment first));
        var mappings = elf.Segments.Where(s => s.Type == ElfSegment.PT_LOAD)
            .Select(s => new ModuleMapping(s.VirtualAddress & ~0xfffUL, (s.VirtualAddress + s.MemorySize + 0xfff) & ~0xfffUL, s.Offset & ~0xfffUL, binary));
        var space = new ProcessSymbolizer(mappings, s_cache);
        ulong leaf = NmAddress(binary, "leaf_function");
        Assert.Equal("leaf_function", Assert.Single(space.Resolve(leaf)).Function);
        Assert.Equal(first.VirtualAddress, elf.Segments.First(s => s.Type == ElfSegment.PT_LOAD).VirtualAddress);
    }
}
