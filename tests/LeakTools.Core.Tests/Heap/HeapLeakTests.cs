using LeakTools.Core.Heap;
using LeakTools.Core.Reports;
using LeakTools.Core.Symbols;
using LeakTools.Tests.Shared;
using Xunit;

namespace LeakTools.Core.Tests.Heap;

/// <summary>A fact that needs a kernel core (core_pattern "core", prlimit).</summary>
public sealed class KernelCoreFactAttribute : FactAttribute
{
    public KernelCoreFactAttribute() => Skip = LinuxFactAttribute.SkipReason(new[] { "g++" }) ?? HeapLeaksRun.KernelCoreReason;
}

/// <summary>Find-LeakedAllocation's engine on tests/fixtures/heap-leaks.cpp, which knows every
/// block it leaked (in the main arena, two thread arenas and mmapped; plain, in a list, in cycles,
/// owned only by leaked blocks, pointed to only from freed memory, a C++ object), kept (from data,
/// bss, TLS, a thread's stack, main's stack, an interior pointer, a kept mmapped block) and freed
/// (tcache, fastbins, small, large and unsorted bins, other threads' tcaches). Every core kind must
/// give exactly the leaks the program made, with malloc_usable_size's sizes: none missed, none false.</summary>
public sealed class HeapLeakTests : IClassFixture<HeapLeaksRun>
{
    private readonly HeapLeaksRun _run;

    public HeapLeakTests(HeapLeaksRun run) => _run = run;

    private static (List<LeakedAllocation> Leaks, CoreHeapAnalysis Analysis) Analyze(string core, SymbolCache? symbols = null)
    {
        var analysis = CoreHeapAnalysis.Open(core, new HeapAnalysisOptions { Symbols = symbols });
        return (analysis.FindLeaks(), analysis);
    }

    private void AssertExactlyTheLeaks(string core, SymbolCache? symbols = null)
    {
        var (leaks, analysis) = Analyze(core, symbols);
        using (analysis)
        {
            var expected = _run.Manifest.Leaks.Select(e => $"0x{e.Address:x} {e.Usable} {e.Kind}").Order().ToList();
            var found = leaks.Select(l => $"0x{l.Address:x} {l.Size} {l.Kind}").Order().ToList();
            Assert.Equal(expected, found);
            Assert.Empty(analysis.Warnings);

            var byAddress = leaks.ToDictionary(l => l.Address);
            foreach (ManifestEntry e in _run.Manifest.Leaks)
            {
                LeakedAllocation l = byAddress[e.Address];
                Assert.Equal(e.Type, l.TypeName);
                Assert.Equal(e.Kind == "Leaked", l.ReferencedBy > 0);
                if (e.Arena is "main" or "mmapped") Assert.Equal(e.Arena, l.Arena);
                Assert.Equal(_run.Pid, l.ProcessId);
                Assert.Equal(core, l.Core);
                Assert.Null(l.Frames);
            }
            // Each thread's leaks lie in an arena of its own.
            var threadArenas = _run.Manifest.Leaks.Where(e => e.Arena.StartsWith("thread")).GroupBy(e => e.Arena)
                .Select(g => g.Select(e => byAddress[e.Address].Arena).Distinct().Single()).ToList();
            Assert.Equal(2, threadArenas.Count);
            Assert.All(threadArenas, a => Assert.StartsWith("0x", a));
            Assert.NotEqual(threadArenas[0], threadArenas[1]);

            // The first bytes, as hex and text.
            ManifestEntry small = _run.Manifest.Leaks.Single(e => e.Arena == "main" && e.Requested == 24);
            Assert.Equal("73 6d 61 6c 6c 20 6c 65 61 6b 00 00 00 00 00 00  |small leak......|", byAddress[small.Address].Preview);

            var unreferenced = analysis.FindLeaks(unreferencedOnly: true).Select(l => l.Address).Order();
            Assert.Equal(_run.Manifest.Leaks.Where(e => e.Kind == "Unreferenced").Select(e => e.Address).Order(), unreferenced);
        }
    }

    [LinuxFact("g++")]
    public void A_snapshot_gives_exactly_the_leaks_the_program_made() => AssertExactlyTheLeaks(_run.Snapshot);

    [LinuxFact("g++")]
    public void A_zstd_compressed_core_gives_exactly_the_leaks_the_program_made() => AssertExactlyTheLeaks(_run.CompressedSnapshot);

    [LinuxFact("g++", "gcore")]
    public void A_gcore_core_gives_exactly_the_leaks_the_program_made() => AssertExactlyTheLeaks(_run.Gcore!);

    [KernelCoreFact]
    public void A_kernel_core_gives_exactly_the_leaks_the_program_made() => AssertExactlyTheLeaks(_run.KernelCore!);

    [LinuxFact("g++")]
    public void Without_libc_debug_symbols_main_arena_and_the_tcaches_are_found_by_scanning()
    {
        string empty = Directory.CreateTempSubdirectory("leaktools-nodebug-").FullName;
        try
        {
            using var symbols = new SymbolCache(new SymbolizerOptions { DebugDirectories = new[] { empty }, DebuginfodUrls = Array.Empty<string>() });
            using CoreHeapAnalysis analysis = CoreHeapAnalysis.Open(_run.Snapshot, new HeapAnalysisOptions { Symbols = symbols });
            Assert.Contains("scanning", analysis.Statistics.LibcSymbols);
            AssertExactlyTheLeaks(_run.Snapshot, symbols);
        }
        finally
        {
            Directory.Delete(empty);
        }
    }

    [LinuxFact("g++")]
    public void The_summary_counts_each_free_list_and_adds_up_to_system_mem()
    {
        using CoreHeapAnalysis analysis = CoreHeapAnalysis.Open(_run.Snapshot);
        List<HeapSummary> rows = analysis.Summarize();
        Assert.Equal(new[] { HeapArenaKind.Main, HeapArenaKind.Thread, HeapArenaKind.Thread, HeapArenaKind.Mmapped }, rows.Select(r => r.Kind));
        HeapSummary main = rows[0];
        // 7 chunks each of 0x30 and 0x140 in tcache, plus the freed holder (0x90).
        Assert.Equal(15, main.TcacheChunks);
        Assert.Equal(3, main.FastbinChunks);
        Assert.Equal(2, main.UnsortedChunks);
        Assert.Equal(3, main.SmallbinChunks);
        Assert.Equal(4, main.LargebinChunks);
        Assert.Equal(main.TcacheChunks + main.FastbinChunks + main.UnsortedChunks + main.SmallbinChunks + main.LargebinChunks, main.FreeChunks);
        Assert.Equal(main.HeapBytes, main.UsedBytes + main.FreeBytes + main.TopBytes); // the brk heap is chunks from sbrk_base to the top's end
        foreach (HeapSummary t in rows.Skip(1).Take(2))
        {
            Assert.InRange(t.TcacheChunks, 3, 5); // each thread's own cache of three 168-byte blocks (and memalign's slack in one)
            Assert.Equal(1, t.Heaps);
            Assert.Equal(1, t.Threads);
            Assert.InRange(t.HeapBytes - (t.UsedBytes + t.FreeBytes + t.TopBytes), 0x8c0, 0x8d0); // heap_info + malloc_state
        }
        HeapSummary mm = rows[3];
        var mmapped = _run.Manifest.Entries.Where(e => e.What != "FREE" && e.Requested >= 128 * 1024).ToList();
        Assert.Equal(mmapped.Count, mm.MmappedChunks);
        // Whole mappings: the memalign'd one has its leading gap too.
        Assert.InRange(mm.MmappedBytes!.Value, mmapped.Sum(e => e.Usable + 16), mmapped.Sum(e => e.Usable + 16) + 65536);
        Assert.Equal(0, mm.MmappedBytes % 4096);
        Assert.All(rows, r => Assert.True(r.Complete));
        Assert.All(rows, r => Assert.Matches(@"^2\.\d+$", r.LibcVersion));
    }

    [LinuxFact("g++", "valgrind")]
    public void Valgrind_on_the_same_program_counts_the_same_leaks()
    {
        string manifest = Path.Combine(_run.Dir, "valgrind-manifest.txt");
        string log = Path.Combine(_run.Dir, "valgrind.log");
        // VALGRIND_DO_LEAK_CHECK at the point where the native run waited for its core.
        Tools.Run("valgrind", "--leak-check=no", $"--log-file={log}", _run.Exe, manifest, "check");
        LeakSummary v = ValgrindLogReader.Read(log).Single().Summary;
        HeapManifest underValgrind = HeapManifest.Read(manifest);
        Assert.Equal(underValgrind.Leaks.Count(), _run.Manifest.Leaks.Count());

        var (leaks, analysis) = Analyze(_run.Snapshot);
        using (analysis)
        {
            var requested = _run.Manifest.Leaks.ToDictionary(e => e.Address, e => e.Requested);
            Assert.Equal(v.DefinitelyLostBlocks + v.IndirectlyLostBlocks, leaks.Count);
            Assert.Equal(v.DefinitelyLost + v.IndirectlyLost, leaks.Sum(l => requested[l.Address]));
            // valgrind names one block of each leaked cycle "definitely lost" (the program makes two
            // cycles); in a cycle every block is referenced, so none is Unreferenced here.
            Assert.Equal(v.DefinitelyLostBlocks - 2, leaks.Count(l => l.Kind == LeakedAllocationKind.Unreferenced));
            // What valgrind calls possibly lost (interior pointers only) is reachable here.
            Assert.True(v.PossiblyLostBlocks >= 1);
            ManifestEntry interior = _run.Manifest.Kept.Single(e => e.Kind == "interior-only");
            Assert.DoesNotContain(leaks, l => l.Address == interior.Address);
        }
    }
}
