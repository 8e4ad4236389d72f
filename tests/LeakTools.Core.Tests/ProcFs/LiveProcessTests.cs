using LeakTools.Core.ProcFs;
using LeakTools.Tests.Shared;
using Xunit;

namespace LeakTools.Core.Tests.ProcFs;

/// <summary>The readers on a running fixture that holds a known amount of memory.</summary>
public class LiveProcessTests
{
    private const long Page = 4096;

    [LinuxFact("gcc")]
    public void Touched_private_memory_is_exact_in_the_mapping_and_counted_in_uss()
    {
        string exe = FixtureBuilder.Build("touch-memory.c");
        using var fx = FixtureProcess.Start(exe, "8192");
        long bytes = fx.Long("bytes");
        var reader = new ProcessReader(new ProcRoot());
        var identity = reader.ReadIdentity(fx.Pid);
        var mapping = reader.ReadMappings(identity).Single(m => m.Address == fx.Hex("addr"));
        Assert.Equal(bytes, mapping.Size);
        Assert.InRange(mapping.Rss, bytes - Page, bytes);
        Assert.InRange(mapping.Pss, bytes - Page, bytes);
        Assert.InRange(mapping.PrivateDirty, bytes - Page, bytes);
        Assert.Equal(mapping.Rss, mapping.Anonymous);
        Assert.Equal("", mapping.Mapping);

        var memory = reader.ReadMemory(identity);
        Assert.Equal("smaps_rollup", memory.Source);
        Assert.True(memory.Uss >= bytes - Page, $"Uss {memory.Uss} < {bytes}");
        Assert.True(memory.Pss >= memory.Uss);
        Assert.True(memory.Rss >= memory.Pss);
        Assert.Equal(fx.Pid, memory.Id);
        Assert.Equal("touch-memory", memory.Name);
        Assert.Equal("root", memory.User);
    }

    [LinuxFact("gcc")]
    public void Pages_shared_with_a_child_count_half_in_pss()
    {
        string exe = FixtureBuilder.Build("touch-memory.c");
        using var fx = FixtureProcess.Start(exe, "1024", "4096");
        long shared = fx.Long("shared_bytes");
        var reader = new ProcessReader(new ProcRoot());
        var mapping = reader.ReadMappings(reader.ReadIdentity(fx.Pid)).Single(m => m.Address == fx.Hex("shared"));
        Assert.Equal(shared, mapping.Rss);
        Assert.InRange(mapping.Pss, shared / 2 - Page, shared / 2 + Page);
        Assert.Equal(shared, mapping.SharedDirty);
        Assert.Equal(0, mapping.PrivateDirty);
        Assert.EndsWith("(deleted)", mapping.Mapping); // MAP_SHARED|MAP_ANONYMOUS is /dev/zero (deleted)
        var child = reader.ReadMappings(reader.ReadIdentity((int)fx.Long("child"))).Single(m => m.Address == fx.Hex("shared"));
        Assert.InRange(child.Pss, shared / 2 - Page, shared / 2 + Page);
    }

    [LinuxFact("gcc")]
    public void Rollup_and_the_forced_smaps_fallback_agree_on_a_stopped_process()
    {
        // Static binary: no page is shared with other processes, so nothing moves between reads.
        string exe = FixtureBuilder.Build("touch-memory.c", "-O0 -g -static", "touch-memory-static");
        using var fx = FixtureProcess.Start(exe, "4096", "1024");
        using var _ = Signals.Stopped(fx.Pid, (int)fx.Long("child"));
        var fast = new ProcessReader(new ProcRoot());
        var slow = new ProcessReader(new ProcRoot("/proc", forceSmaps: true));
        var a = fast.ReadMemory(fast.ReadIdentity(fx.Pid));
        var b = slow.ReadMemory(slow.ReadIdentity(fx.Pid));
        int mappings = fast.ReadMappings(fast.ReadIdentity(fx.Pid)).Count;
        Assert.Equal("smaps", b.Source);
        Assert.Equal(a.Rss, b.Rss);
        Assert.Equal(a.Uss, b.Uss);
        Assert.Equal(a.SharedDirty, b.SharedDirty);
        Assert.Equal(a.Anonymous, b.Anonymous);
        Assert.InRange(a.Pss - b.Pss, 0, mappings * 1024L); // smaps rounds Pss down per mapping
        Assert.NotNull(a.PssAnon);
        Assert.Null(b.PssAnon); // the per-mapping smaps has no Pss_Anon: absent, not 0
    }

    [LinuxFact("gcc", "pmap")]
    public void Totals_equal_the_totals_line_of_pmap_X_for_the_same_stopped_process()
    {
        string exe = FixtureBuilder.Build("touch-memory.c", "-O0 -g -static", "touch-memory-static");
        using var fx = FixtureProcess.Start(exe, "6144", "2048");
        using var _ = Signals.Stopped(fx.Pid, (int)fx.Long("child"));
        var pmap = PmapTotals.Parse(Tools.Run("pmap", "-X", fx.Pid.ToString()).Split('\n'));
        var reader = new ProcessReader(new ProcRoot());
        var maps = reader.ReadMappings(reader.ReadIdentity(fx.Pid));
        Assert.Equal(pmap["Size"], maps.Sum(m => m.Size) / 1024);
        Assert.Equal(pmap["Rss"], maps.Sum(m => m.Rss) / 1024);
        Assert.Equal(pmap["Pss"], maps.Sum(m => m.Pss) / 1024);
        Assert.Equal(pmap["Referenced"], maps.Sum(m => m.Referenced) / 1024);
        Assert.Equal(pmap["Anonymous"], maps.Sum(m => m.Anonymous) / 1024);
        Assert.Equal(pmap["Swap"], maps.Sum(m => m.Swap) / 1024);
        Assert.Equal(pmap["Locked"], maps.Sum(m => m.Locked) / 1024);
    }

    [LinuxFact("gcc")]
    public void A_process_that_exits_between_reads_is_reported_as_exited()
    {
        string exe = FixtureBuilder.Build("touch-memory.c");
        var reader = new ProcessReader(new ProcRoot());
        ProcessIdentity identity;
        using (var fx = FixtureProcess.Start(exe, "64"))
        {
            identity = reader.ReadIdentity(fx.Pid);
        }
        Assert.Throws<ProcessExitedException>(() => reader.ReadMemory(identity));
        Assert.Throws<ProcessExitedException>(() => reader.ReadMappings(identity));
        Assert.Throws<ProcessNotFoundException>(() => reader.ReadIdentity(identity.Id));
    }

    [LinuxFact]
    public void Kernel_threads_are_recognised_on_this_kernel()
    {
        var reader = new ProcessReader(new ProcRoot());
        Assert.True(reader.ReadIdentity(2).Status.IsKernelThread); // kthreadd
        Assert.False(reader.ReadIdentity(Environment.ProcessId).Status.IsKernelThread);
    }

    [LinuxFact]
    public void Meminfo_of_this_machine_is_consistent()
    {
        var m = MeminfoReader.Read();
        Assert.True(m.Total > 0);
        Assert.InRange(m.Available, 0, m.Total);
        Assert.InRange(m.Free, 0, m.Total);
        Assert.Equal(m.Fields["MemTotal"], m.Total);
    }
}
