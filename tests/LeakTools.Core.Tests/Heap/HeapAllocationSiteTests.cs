using System.Diagnostics;
using System.Globalization;
using LeakTools.Core.Heap;
using LeakTools.Core.Hosting;
using LeakTools.Core.Tests.Tracing;
using LeakTools.Core.Tracing.Agent;
using LeakTools.Tests.Shared;
using Xunit;

namespace LeakTools.Core.Tests.Heap;

/// <summary>Find-LeakedAllocation's allocation sites: the in-process agent's live table, read back
/// from a core of a process it tracks (tests/fixtures/core-sites.c leaks 200-byte blocks from
/// leak_in_alpha and 3000-byte ones from leak_in_beta). Each kind of core (snapshot, gcore, the
/// kernel's) names each leaked block's function; blocks leaked before the attach, a core without
/// the agent and a core taken after the agent detached give no frames. The agent's own copies of
/// block addresses (its live table) never keep a leak alive, and neither does main_arena's pointer
/// to the top chunk, whose header overlaps the last bytes of the block below it (a leaked 3000-byte
/// block there was missed before).</summary>
public sealed class HeapAllocationSiteTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("leaktools-sites-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string Build() => HeapFixtures.CoreSites();

    private sealed record Block(string What, ulong Address, long Size);

    /// <summary>The fixture's "LEAK what 0xaddr size" and "KEEP ..." lines.</summary>
    private static List<Block> Blocks(IEnumerable<string> lines) => lines
        .Select(l => l.Split(' '))
        .Where(f => f.Length == 4 && f[0] is "LEAK" or "KEEP")
        .Select(f => new Block(f[1], ulong.Parse(f[2].AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture), long.Parse(f[3], CultureInfo.InvariantCulture)))
        .ToList();

    private static AgentSessionOptions Options() => new()
    {
        Expire = TimeSpan.FromSeconds(0.2), // expired blocks' addresses pass through the agent's send buffer
        AgentPath = AgentTestTarget.AgentPath,
        WaitForAllocation = TimeSpan.FromSeconds(30),
    };

    private static readonly Dictionary<string, string> Functions = new()
    {
        ["alpha"] = "leak_in_alpha",
        ["beta"] = "leak_in_beta",
        ["early"] = "leak_early",
    };

    /// <summary>Line of the malloc call in <paramref name="function"/> (what the frame's location must be).</summary>
    private static int MallocLine(string function)
    {
        string[] lines = File.ReadAllLines(Path.Combine(RepoPaths.Fixtures, "core-sites.c"));
        int start = Array.FindIndex(lines, l => l.StartsWith("NOINLINE void " + function + "(", StringComparison.Ordinal));
        return Array.FindIndex(lines, start, l => l.Contains("malloc(", StringComparison.Ordinal)) + 1;
    }

    private string Snapshot(int pid, string name)
    {
        using HelperClient helper = HelperClient.Start();
        return HeapLeaksRun.TakeSnapshot(helper, new SnapshotRequest { Pid = pid, Destination = _dir, FileName = name });
    }

    private static void WaitUntil(Func<bool> condition, string what, double seconds = 20)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed.TotalSeconds > seconds) throw new TimeoutException("timed out waiting for " + what);
            Thread.Sleep(20);
        }
    }

    /// <summary>Waits until the agent has reported every block of <paramref name="blocks"/> expired
    /// (so their addresses went through its send buffer, which stays in its bss).</summary>
    private static void WaitExpired(AgentRecorder recorder, IEnumerable<Block> blocks)
    {
        var wanted = blocks.Select(b => b.Address).ToHashSet();
        WaitUntil(() =>
        {
            lock (recorder.SyncRoot) return wanted.IsSubsetOf(recorder.Expired.Select(e => e.Address));
        }, "the leaked blocks to expire");
    }

    private static (List<LeakedAllocation> Leaks, HeapScanStatistics Statistics) Analyze(string core)
    {
        using CoreHeapAnalysis analysis = CoreHeapAnalysis.Open(core);
        List<LeakedAllocation> leaks = analysis.FindLeaks();
        Assert.Empty(analysis.Warnings);
        return (leaks, analysis.Statistics);
    }

    /// <summary>Every leaked block is reported with its size; those the agent saw allocated name the
    /// function that allocated them (Frames: the allocator's entry in libc, that function, main),
    /// the others have no frames; kept blocks are not reported.</summary>
    private static HeapScanStatistics AssertSites(string core, IReadOnlyCollection<Block> traced, IReadOnlyCollection<Block> untraced, IReadOnlyCollection<Block> kept)
    {
        var (leaks, stats) = Analyze(core);
        var byAddress = leaks.ToDictionary(l => l.Address);
        foreach (Block b in traced.Concat(untraced))
        {
            Assert.True(byAddress.ContainsKey(b.Address), $"{Path.GetFileName(core)}: the {b.What} block 0x{b.Address:x} is not reported leaked ({stats.AllocationSites})");
            Assert.Equal(b.Size, byAddress[b.Address].Size);
        }
        foreach (Block b in traced)
        {
            LeakedAllocation l = byAddress[b.Address];
            string function = Functions[b.What];
            Assert.True(l.Frames is not null, $"{Path.GetFileName(core)}: no frames for the {b.What} block 0x{b.Address:x} ({stats.AllocationSites})");
            Assert.StartsWith("libc", l.Frames![0].ModuleName); // the allocator's entry: the real malloc
            Assert.Equal(function, l.Function);
            Assert.Equal($"core-sites.c:{MallocLine(function)}", l.Location);
            StackFrame caller = l.Frames.First(f => f.Function == function);
            Assert.Equal("lt-core-sites", caller.ModuleName);
            Assert.Contains(l.Frames, f => f.Function == "main");
        }
        foreach (Block b in untraced)
        {
            Assert.Null(byAddress[b.Address].Frames);
            Assert.Null(byAddress[b.Address].Function);
        }
        foreach (Block b in kept) Assert.False(byAddress.ContainsKey(b.Address), $"the kept block 0x{b.Address:x} is reported leaked");
        Assert.Equal(traced.Count, stats.LeaksWithSites);
        return stats;
    }

    /// <summary>A descriptor this LeakTools cannot trust (its magic damaged, or a later version) gives
    /// no sites and says why; since the agent's table then cannot be kept out of the roots, a warning
    /// says that blocks it tracks may not show as leaked. The blocks it never tracked are still found.</summary>
    private void AssertDescriptorChecked(string core, IReadOnlyCollection<Block> untracked, IReadOnlyCollection<Block> kept)
    {
        byte[] image = File.ReadAllBytes(core);
        byte[] magic = System.Text.Encoding.ASCII.GetBytes("LeakTools agent\0");
        var at = new List<int>();
        for (int i = image.AsSpan().IndexOf(magic); i >= 0;)
        {
            at.Add(i);
            int next = image.AsSpan(i + 1).IndexOf(magic);
            i = next < 0 ? -1 : i + 1 + next;
        }
        Assert.NotEmpty(at);
        foreach (var (name, patch, said) in new (string, Action<byte[], int>, string)[]
        {
            ("core.bad-magic", (b, i) => b[i + 14] = (byte)'X', "does not start with its magic"),
            ("core.version-2", (b, i) => b[i + 16] = 2, "is version 2"),
        })
        {
            byte[] copy = (byte[])image.Clone();
            foreach (int i in at) patch(copy, i);
            string path = Path.Combine(_dir, name);
            File.WriteAllBytes(path, copy);
            using (CoreHeapAnalysis analysis = CoreHeapAnalysis.Open(path))
            {
                var byAddress = analysis.FindLeaks().ToDictionary(l => l.Address);
                Assert.Contains(said, analysis.Statistics.AllocationSites);
                Assert.Contains(analysis.Warnings, w => w.Contains("may be held by its table", StringComparison.Ordinal));
                Assert.All(byAddress.Values, l => Assert.Null(l.Frames));
                foreach (Block b in untracked) Assert.Equal(b.Size, byAddress[b.Address].Size);
                foreach (Block b in kept) Assert.False(byAddress.ContainsKey(b.Address));
            }
            File.Delete(path);
        }
    }

    [LinuxFact("gcc")]
    public void Attached_agent_names_each_leaks_function_in_a_snapshot_a_gcore_and_a_kernel_core()
    {
        bool kernel = HeapLeaksRun.KernelCoreReason is null;
        var argv = new List<string>();
        if (kernel)
        {
            string prlimit = (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':').Select(d => Path.Combine(d, "prlimit")).First(File.Exists);
            argv.AddRange(new[] { prlimit, "--core=unlimited:unlimited" });
        }
        argv.AddRange(new[] { Build(), _dir });
        using AgentTestTarget target = AgentTestTarget.SpawnCommand(argv);
        List<Block> early = Blocks(target.Send("early 3"));
        Assert.Equal(3, early.Count);

        using var cts = new CancellationTokenSource();
        using AgentSession session = AgentSession.Attach(target.Pid, Options(), CancellationToken.None);
        var recorder = new AgentRecorder();
        Task<AgentSessionEnd> run = Task.Run(() => session.Run(recorder, null, cts.Token));
        List<Block> leaks = Blocks(target.Send("leak 4"));
        List<Block> kept = Blocks(target.Send("keep 2"));
        Assert.Equal(8, leaks.Count);
        Assert.Equal(2, kept.Count);
        WaitExpired(recorder, leaks.Concat(kept));

        HeapScanStatistics stats = AssertSites(Snapshot(target.Pid, "core.snapshot"), leaks, early, kept);
        Assert.StartsWith("Allocation sites from the agent's live table", stats.AllocationSites);
        AssertDescriptorChecked(Path.Combine(_dir, "core.snapshot"), early, kept);

        if (LinuxFactAttribute.ToolExists("gcore"))
        {
            string prefix = Path.Combine(_dir, "gcore");
            Tools.Run("gcore", "-o", prefix, target.Pid.ToString(CultureInfo.InvariantCulture));
            AssertSites($"{prefix}.{target.Pid}", leaks, early, kept);
        }

        if (kernel)
        {
            Signals.Send(target.Pid, 6);
            target.CloseAndWait(); // reaped once the kernel has written the core
            Assert.True(run.Wait(TimeSpan.FromSeconds(20)));
            AssertSites(Path.Combine(_dir, "core"), leaks, early, kept);
        }
        else
        {
            cts.Cancel();
            Assert.True(run.Wait(TimeSpan.FromSeconds(20)));
        }
    }

    [LinuxFact("gcc")]
    public void A_core_without_the_agent_or_after_it_detached_has_no_sites_and_every_leak_is_still_found()
    {
        using AgentTestTarget target = AgentTestTarget.SpawnCommand(new[] { Build(), _dir });
        List<Block> before = Blocks(target.Send("leak 2"));
        HeapScanStatistics plain = AssertSites(Snapshot(target.Pid, "core.plain"), Array.Empty<Block>(), before, Array.Empty<Block>());
        Assert.Null(plain.AllocationSites); // no agent: nothing to say

        using var cts = new CancellationTokenSource();
        using AgentSession session = AgentSession.Attach(target.Pid, Options(), CancellationToken.None);
        var recorder = new AgentRecorder();
        Task<AgentSessionEnd> run = Task.Run(() => session.Run(recorder, null, cts.Token));
        List<Block> during = Blocks(target.Send("leak 3"));
        WaitExpired(recorder, during);
        cts.Cancel();
        Assert.True(run.Wait(TimeSpan.FromSeconds(20)));
        Assert.Equal(AgentSessionEnd.Detached, run.Result);

        // The agent stays loaded (never dlclosed), its session over: the blocks are leaks all the
        // same, now without sites.
        HeapScanStatistics after = AssertSites(Snapshot(target.Pid, "core.detached"), Array.Empty<Block>(), before.Concat(during).ToList(), Array.Empty<Block>());
        Assert.Contains("no Watch-Allocation session was active", after.AllocationSites);
        Assert.Equal(0, target.CloseAndWait());
    }

    [LinuxFact("gcc")]
    public void Launched_under_the_agent_every_leak_has_its_site()
    {
        var (session, target) = AgentTestTarget.LaunchProgram(Build(), Options(), _dir);
        using (session)
        using (target)
        {
            var recorder = new AgentRecorder();
            Task<AgentSessionEnd> run = Task.Run(() => session.Run(recorder, null, CancellationToken.None));
            List<Block> leaks = Blocks(target.Send("early 2"));
            leaks.AddRange(Blocks(target.Send("leak 2")));
            Assert.Equal(6, leaks.Count);
            AssertSites(Snapshot(target.Pid, "core.launched"), leaks, Array.Empty<Block>(), Array.Empty<Block>());
            target.CloseAndWait();
            Assert.True(run.Wait(TimeSpan.FromSeconds(20)));
        }
    }
}
