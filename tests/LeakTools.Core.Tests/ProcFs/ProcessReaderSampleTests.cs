using LeakTools.Core.ProcFs;
using LeakTools.Tests.Shared;
using Xunit;

namespace LeakTools.Core.Tests.ProcFs;

/// <summary>The readers on checked-in /proc trees: a current kernel and a RHEL 7-like one
/// (no smaps_rollup, no Pss_Dirty/Pss_Anon, no Kthread line).</summary>
public class ProcessReaderSampleTests
{
    private static ProcRoot Rhel7 => new(Path.Combine(RepoPaths.Samples, "proc", "rhel7"));
    private static ProcRoot Modern(bool forceSmaps = false) => new(Path.Combine(RepoPaths.Samples, "proc", "modern"), forceSmaps);

    [Fact]
    public void Old_kernel_without_rollup_falls_back_to_summing_smaps()
    {
        var reader = new ProcessReader(Rhel7);
        var identity = reader.ReadIdentity(15046);
        var m = reader.ReadMemory(identity);
        Assert.Equal("smaps", m.Source);
        Assert.Equal("amsHelper", m.Name);
        Assert.Equal("/sbin/amsHelper -f", m.CommandLine);
        Assert.Equal(11360L * 1024, m.Rss);
        Assert.Equal(11080L * 1024, m.Pss);
        Assert.Null(m.PssAnon);
        Assert.Null(m.PssDirty);
        Assert.Null(m.SwapPss);
        Assert.Equal(m.PrivateClean + m.PrivateDirty, m.Uss);
        Assert.Equal(9856L * 1024, m.PrivateDirty); // anonymous private pages of the sample
    }

    [Fact]
    public void Rollup_and_forced_smaps_fallback_agree_on_the_same_capture()
    {
        int pid = ProcessId(Modern());
        var fast = new ProcessReader(Modern());
        var slow = new ProcessReader(Modern(forceSmaps: true));
        var a = fast.ReadMemory(fast.ReadIdentity(pid));
        var b = slow.ReadMemory(slow.ReadIdentity(pid));
        Assert.Equal("smaps_rollup", a.Source);
        Assert.Equal("smaps", b.Source);
        Assert.Equal(a.Rss, b.Rss);
        Assert.Equal(a.Uss, b.Uss);
        Assert.Equal(a.SharedClean, b.SharedClean);
        Assert.Equal(a.Anonymous, b.Anonymous);
        Assert.InRange(Math.Abs(a.Pss - b.Pss), 0, 64 * 1024);
        Assert.NotNull(a.PssAnon);
    }

    [Fact]
    public void Comm_cut_at_15_characters_is_extended_from_the_command_line()
    {
        var reader = new ProcessReader(Rhel7);
        var id = reader.ReadIdentity(2102);
        Assert.Equal("amsHelperWatchd", id.Comm);
        Assert.Equal("amsHelperWatchdog", id.Name);
        Assert.Contains("amsHelperWatchdog", id.MatchNames);
        var plain = reader.ReadIdentity(45256);
        Assert.Equal("amsHelper", plain.Name);
        Assert.Equal("amsHelper", plain.CommandLine);
    }

    [Fact]
    public void Kernel_threads_and_zombies_are_recognised_on_old_kernels()
    {
        var reader = new ProcessReader(Rhel7);
        Assert.True(reader.ReadIdentity(2).Status.IsKernelThread);
        var zombie = reader.ReadIdentity(3001).Status;
        Assert.True(zombie.IsZombie);
        Assert.False(zombie.IsKernelThread);
        Assert.False(reader.ReadIdentity(15046).Status.IsKernelThread);
        Assert.Throws<ProcessExitedException>(() => reader.ReadMemory(reader.ReadIdentity(3001)));
    }

    [Fact]
    public void Missing_process_is_a_typed_not_found()
    {
        var reader = new ProcessReader(Rhel7);
        var ex = Assert.Throws<ProcessNotFoundException>(() => reader.ReadIdentity(999999));
        Assert.Equal("ProcessNotFound", ex.ErrorId);
        Assert.Equal(999999, ex.Target);
    }

    [Fact]
    public void Mappings_of_old_kernel_sample_keep_pmap_columns()
    {
        var reader = new ProcessReader(Rhel7);
        var maps = reader.ReadMappings(reader.ReadIdentity(15046));
        Assert.Equal(15, maps.Count);
        var heap = maps.Single(m => m.Mapping == "[heap]");
        Assert.Equal(0x01962000UL, heap.Address);
        Assert.Equal(9716L * 1024, heap.Size);
        Assert.Equal(9716L * 1024, heap.Anonymous);
        Assert.Null(heap.PssDirty);
        Assert.Null(heap.LazyFree);
        Assert.Equal("", maps[3].Mapping);
        Assert.Equal("/usr/lib64/libfreeblpriv3.so", maps[5].Mapping);
        Assert.Equal(44L * 1024, maps[5].Pss);
        Assert.True(maps[5].Fields.ContainsKey("Shared_Clean"));
        Assert.Equal(ProcessId(Rhel7, 15046), maps[0].ProcessId);
    }

    [Fact]
    public void Meminfo_of_a_current_and_an_old_kernel()
    {
        var now = MeminfoReader.Read(Modern());
        Assert.True(now.Fields.ContainsKey("MemAvailable"));
        Assert.Equal(now.Fields["MemAvailable"], now.Available);
        Assert.Equal(now.Total - now.Available, now.Used);
        Assert.Equal(now.Fields["Committed_AS"], now.CommittedAs);

        var old = MeminfoReader.Read(Rhel7);
        Assert.False(old.Fields.ContainsKey("MemAvailable"));
        Assert.Equal(3921488L * 1024, old.Total);
        Assert.Equal((163212L + 211372 + 2433480 + 253536) * 1024, old.Available);
        Assert.Equal(2048L * 1024, old.HugePageSize);
        Assert.Equal(0, old.HugePagesTotal); // a count, not kB
        Assert.Equal(34359738367L * 1024, old.Fields["VmallocTotal"]);
        Assert.Contains("MemTotal=", old.Fields.ToString());
    }

    private static int ProcessId(ProcRoot root, int? expected = null)
    {
        var ids = root.ListProcessIds();
        return expected ?? ids.Single();
    }
}
