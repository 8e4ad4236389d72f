using LeakTools.Core.Symbols;
using LeakTools.Tests.Shared;
using Xunit;
using Xunit.Abstractions;

namespace LeakTools.Core.Tests.Symbols;

/// <summary>Parity with binutils addr2line -f -C -i over thousands of addresses spread through every
/// function of the fixture in every build variant, and of libc through its build-id debug file.
/// Every difference must have a known, checked cause (see <see cref="Addr2LineParity.Explain"/>).</summary>
public sealed class SymbolizerParityTests(ITestOutputHelper output)
{
    [LinuxFact("gcc", "g++", "addr2line", "objcopy", "xz", "nm", "eu-addr2line")]
    public void Matches_addr2line_over_every_function_of_every_build_variant()
    {
        var results = new List<ParityResult>();
        foreach (SymbolVariant v in SymbolFixtures.AllVariants())
        {
            using var cache = new SymbolCache(new SymbolizerOptions { DebugDirectories = v.DebugDirectories });
            ModuleSymbolizer module = cache.GetModule(v.Binary);
            List<ulong> addresses = Addr2LineParity.SampleAddresses(v.Reference, 2500);
            ParityResult r;
            if (v.LinesExpected)
            {
                var peer = Addr2LineParity.RunAddr2Line(v.Reference, addresses);
                r = Addr2LineParity.Compare(v.Name, module, peer);
                Addr2LineParity.Explain(r, module, peer, a => Addr2LineParity.RunEuAddr2Line(v.Reference, a));
                Assert.True(module.HasLineInfo, $"{v.Name}: no DWARF found ({module.DebugSource})");
            }
            else
            {
                // MiniDebugInfo carries function symbols only: the peer is elfutils, which reads it too.
                Assert.True(module.HasMiniDebugInfo, $"{v.Name}: .gnu_debugdata was not read");
                var peer = Addr2LineParity.RunAddr2Line(v.Binary, addresses, "eu-addr2line", "-a -f -C");
                r = Addr2LineParity.Compare(v.Name, module, peer, functionsOnly: true, outermostOnly: true);
                foreach (string d in r.Differences) r.Unexplained.Add(d);
            }
            results.Add(r);
            output.WriteLine(r.ToString());
            foreach (string d in r.Unexplained.Take(20)) output.WriteLine("    " + d);
        }

        Assert.All(results, r => Assert.True(r.Addresses >= 1000, $"{r.Variant}: only {r.Addresses} addresses"));
        Assert.All(results, r => Assert.True(r.Unexplained.Count == 0, $"{r.Variant}: {r.Unexplained.Count} unexplained differences, e.g. {r.Unexplained.FirstOrDefault()}"));
        Assert.All(results, r => Assert.True(r.Rate(r.FunctionMatches) >= 99.5 && r.Rate(r.LineMatches) >= 99.5, r.ToString()));
        Assert.Contains(results, r => r.Variant == "split-buildid" && r.Rate(r.LineMatches) == 100);
    }

    [LinuxFact("addr2line", "nm", "eu-addr2line")]
    public void Libc_resolves_to_file_and_line_through_its_build_id_debug_file_as_addr2line_does()
    {
        const string libc = "/usr/lib/x86_64-linux-gnu/libc.so.6";
        using var cache = new SymbolCache(new SymbolizerOptions());
        ModuleSymbolizer module = cache.GetModule(libc);
        Assert.Equal(DebugInfoSource.BuildId, module.DebugSource); // libc6-dbg is part of the test machine
        Assert.StartsWith("/usr/lib/debug/.build-id/", module.DebugFile);

        List<ulong> addresses = Addr2LineParity.SampleAddresses(module.DebugFile!, 4000);
        var peer = Addr2LineParity.RunAddr2Line(libc, addresses);
        ParityResult r = Addr2LineParity.Compare("libc", module, peer);
        Addr2LineParity.Explain(r, module, peer, a => Addr2LineParity.RunEuAddr2Line(libc, a));
        output.WriteLine(r.ToString());
        foreach (string d in r.Unexplained.Take(20)) output.WriteLine("    " + d);
        Assert.Empty(r.Unexplained);
        Assert.True(r.Rate(r.FunctionMatches) >= 99.5 && r.Rate(r.LineMatches) >= 99.5, r.ToString());

        ElfSymbol malloc = module.AllSymbols().First(s => s.Name == "malloc" && s.Table == ".dynsym");
        SymbolFrame top = module.Resolve(malloc.Address + 4).Frames[^1];
        PeerFrame expected = Addr2LineParity.RunAddr2Line(libc, new[] { malloc.Address + 4 }).Single().Value[^1];
        Assert.Equal("__GI___libc_malloc", top.Function); // glibc's DWARF linkage name (an asm label), as addr2line prints it
        Assert.Equal(expected.Function, top.Function);
        Assert.EndsWith("/malloc/malloc.c", top.File);
        Assert.Equal(expected.Line, top.Line);
    }
}
