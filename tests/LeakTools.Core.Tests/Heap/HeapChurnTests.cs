using System.Globalization;
using LeakTools.Core.Heap;
using LeakTools.Core.Hosting;
using LeakTools.Tests.Shared;
using Xunit;

namespace LeakTools.Core.Tests.Heap;

/// <summary>tests/fixtures/heap-churn.c: four threads malloc, calloc, realloc, memalign and free at
/// random, trade blocks so other threads free them, drop ~4,000 blocks on purpose, and grow one
/// arena to several heaps. Whatever the interleaving: no block reported that the program did not
/// drop, and nearly all it dropped found. A few are missed for the reason every conservative
/// scanner misses some: a stale pointer glibc left in the slack of a live block (the bytes past
/// the request, up to the usable size) still points at them — valgrind, which knows each request's
/// size, does not scan that slack.</summary>
public sealed class HeapChurnTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("leaktools-churn-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [LinuxFact("gcc")]
    public void Random_churn_across_threads_gives_no_false_leak()
    {
        string manifest = Path.Combine(_dir, "manifest.txt");
        using FixtureProcess f = FixtureProcess.Start(FixtureBuilder.Build("heap-churn.c", "-O2 -g", "lt-heap-churn"), manifest);
        string core;
        using (HelperClient helper = HelperClient.Start())
            core = HeapLeaksRun.TakeSnapshot(helper, new SnapshotRequest { Pid = f.Pid, Destination = _dir });
        var dropped = File.ReadAllLines(manifest).Select(l => l.Split(' ')).ToDictionary(
            p => ulong.Parse(p[1].AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture), p => long.Parse(p[2], CultureInfo.InvariantCulture));
        Assert.Equal(f.Long("leaks"), dropped.Count);

        using CoreHeapAnalysis analysis = CoreHeapAnalysis.Open(core);
        List<LeakedAllocation> leaks = analysis.FindLeaks();
        Assert.Empty(analysis.Warnings);
        foreach (LeakedAllocation l in leaks)
        {
            Assert.True(dropped.TryGetValue(l.Address, out long usable), $"0x{l.Address:x} ({l.Size} bytes, {l.Arena}) is reported but was never dropped");
            Assert.Equal(usable, l.Size);
        }
        Assert.True(leaks.Count >= dropped.Count * 97 / 100, $"{leaks.Count} of {dropped.Count} dropped blocks found");

        List<HeapSummary> rows = analysis.Summarize();
        Assert.Contains(rows, r => r.Kind == HeapArenaKind.Thread && r.Heaps >= 2); // the arena grown past 64 MiB
        Assert.Contains(rows, r => r.Kind == HeapArenaKind.Mmapped && r.MmappedChunks > 0);
        Assert.All(rows, r => Assert.True(r.Complete));
    }
}
