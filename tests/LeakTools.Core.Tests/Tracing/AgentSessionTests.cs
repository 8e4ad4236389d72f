using System.Diagnostics;
using LeakTools.Core.Tracing.Agent;
using LeakTools.Tests.Shared;
using Xunit;

namespace LeakTools.Core.Tests.Tracing;

/// <summary>The in-process agent end to end on live fixtures (gcc -O2, PIE, no frame pointers):
/// launch and attach, every allocation entry point, expiry, a library loaded after the attach,
/// fork, detach and re-attach, injection under load, and the agent unhooking itself when its
/// controller vanishes.</summary>
public sealed class AgentSessionTests
{
    private static readonly string[] LeakFunctions =
    {
        "leak_malloc", "leak_calloc", "leak_realloc", "leak_reallocarray", "leak_posix_memalign",
        "leak_aligned_alloc", "leak_memalign", "leak_valloc", "leak_strdup",
    };

    private static AgentSessionOptions Options(double expireSeconds = 0.2) => new()
    {
        Expire = TimeSpan.FromSeconds(expireSeconds),
        AgentPath = AgentTestTarget.AgentPath,
        WaitForAllocation = TimeSpan.FromSeconds(30),
    };

    private static void WaitUntil(Func<bool> condition, string what, double seconds = 20)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed.TotalSeconds > seconds) throw new TimeoutException("timed out waiting for " + what);
            Thread.Sleep(20);
        }
    }

    /// <summary>Function -> the stack through it (innermost fixture function) that expired most
    /// blocks (leak_realloc has two call sites: the first block moves and is freed).</summary>
    private static Dictionary<string, int> StacksByFunction(AgentRecorder r, AgentTestTarget t, IEnumerable<string> names)
    {
        var wanted = new HashSet<string>(names);
        var map = new Dictionary<string, int>();
        List<KeyValuePair<int, ulong[]>> stacks;
        lock (r.SyncRoot) stacks = r.Stacks.ToList();
        foreach (var (id, addresses) in stacks)
        {
            string? f = t.Functions(addresses).FirstOrDefault(wanted.Contains);
            if (f is null) continue;
            if (!map.TryGetValue(f, out int known) || CountersOf(r, id).ExpiredCount > CountersOf(r, known).ExpiredCount) map[f] = id;
        }
        return map;
    }

    private static AgentCounters CountersOf(AgentRecorder r, int stack)
    {
        lock (r.SyncRoot) return r.Counters.GetValueOrDefault(stack);
    }

    [LinuxFact("gcc")]
    public void Launch_sees_every_entry_point_expires_and_reports_the_unfreed_at_exit()
    {
        var (session, target) = AgentTestTarget.Launch(Options());
        using (session)
        using (target)
        {
            var recorder = new AgentRecorder();
            Task<AgentSessionEnd> run = Task.Run(() => session.Run(recorder, null, CancellationToken.None));
            target.Send("leak 3");
            Dictionary<string, int> stacks = new();
            WaitUntil(() =>
            {
                stacks = StacksByFunction(recorder, target, LeakFunctions);
                return stacks.Count == LeakFunctions.Length && stacks.Values.All(id => CountersOf(recorder, id).ExpiredCount == 3);
            }, "every leak_* stack to expire 3 blocks");
            Assert.Equal(300, CountersOf(recorder, stacks["leak_malloc"]).ExpiredBytes);
            Assert.Equal(3 * 200, CountersOf(recorder, stacks["leak_calloc"]).ExpiredBytes);
            Assert.Equal(3 * 640, CountersOf(recorder, stacks["leak_aligned_alloc"]).ExpiredBytes);
            // realloc(NULL, n/2) then realloc(p, n): one expiring block of n, the first one freed by the move
            AgentCounters realloc = CountersOf(recorder, stacks["leak_realloc"]);
            Assert.Equal(3 * 300, realloc.ExpiredBytes);

            target.Send("free");
            WaitUntil(() => stacks.Values.All(id => CountersOf(recorder, id).FreedAfterExpiryCount == 3), "frees after expiry");
            Assert.All(stacks.Values, id => Assert.Equal(0, CountersOf(recorder, id).LiveCount));

            target.Send("leak 1");
            target.Post("crash"); // exit(3) with the new blocks still allocated
            Assert.True(run.Wait(TimeSpan.FromSeconds(20)));
            Assert.Equal(AgentSessionEnd.ProgramExited, run.Result);
            Assert.True(recorder.ProgramExited);
            Assert.All(stacks.Values, id => Assert.Equal(1, CountersOf(recorder, id).LiveCount));
            Assert.Equal(3 << 8, session.WaitStatus);
            // every free was checked (launch mode) and none was bad: a block allocated before the
            // agent's constructor ran, or moved by realloc, is no invalid free
            Assert.Empty(recorder.Problems);
            Assert.True(recorder.Holds >= 1); // the exit waited for the controller (SYNC)
        }
    }

    [LinuxFact("gcc")]
    public void Attach_sees_a_library_loaded_later_and_detaches_leaving_the_target_untraced()
    {
        using AgentTestTarget target = AgentTestTarget.Spawn("4");
        target.Send("leak 2"); // before the attach: their frees are of unknown blocks, tolerated
        using var cts = new CancellationTokenSource();
        using AgentSession session = AgentSession.Attach(target.Pid, Options(), CancellationToken.None);
        Assert.False(session.Reused);
        Assert.Contains("aligned_alloc", session.Ready.FunctionNames);
        Assert.Contains("valloc", session.Ready.FunctionNames);
        Assert.Matches(@"TracerPid:\s+0\n", target.Status);
        var recorder = new AgentRecorder();
        Task<AgentSessionEnd> run = Task.Run(() => session.Run(recorder, null, cts.Token));
        Assert.True(GotSlots.Count(target.Pid).Hooked >= 4, "the program's and libc's slots point at the hooks while attached");

        target.Send($"load {AgentTestTarget.Plugin} 5");
        target.Send("free");
        target.Send("again 2");
        target.Send("thread 4"); // a thread born after the attach
        Dictionary<string, int> stacks = new();
        WaitUntil(() =>
        {
            stacks = StacksByFunction(recorder, target, new[] { "plugin_allocate", "leak_thread" });
            return stacks.Count == 2 && CountersOf(recorder, stacks["plugin_allocate"]).ExpiredCount == 7 &&
                CountersOf(recorder, stacks["leak_thread"]).ExpiredCount == 4;
        }, "the plugin's 7 blocks and the new thread's 4 to expire");
        WaitUntil(() => recorder.Stats is { UnknownFrees: >= 18, Allocations: > 1000 }, "hammer threads' allocations and the unknown frees");
        Assert.True(recorder.Stats!.Stacks < 200, $"{recorder.Stats.Stacks} distinct stacks for a handful of call sites");

        cts.Cancel();
        Assert.True(run.Wait(TimeSpan.FromSeconds(20)));
        Assert.Equal(AgentSessionEnd.Detached, run.Result);
        Assert.True(target.Alive);
        Assert.Matches(@"TracerPid:\s+0\n", target.Status);
        Assert.Single(target.Send("checksum 1000"));
        GotSlots.AssertRestored(target.Pid);
        Assert.Equal(0, target.CloseAndWait());
    }

    [LinuxFact("gcc")]
    public void Attach_to_an_idle_process_takes_a_thread_waiting_in_read_and_its_read_resumes()
    {
        using AgentTestTarget target = AgentTestTarget.Spawn(); // one thread, blocked in read(stdin)
        var clock = Stopwatch.StartNew();
        using var cts = new CancellationTokenSource();
        var verbose = new List<string>();
        AgentSessionOptions options = Options();
        options.Verbose = verbose.Add;
        using AgentSession session = AgentSession.Attach(target.Pid, options, CancellationToken.None);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"attach took {clock.Elapsed}");
        Assert.Contains(verbose, v => v.Contains("waits in system call 0")); // read(2)
        var recorder = new AgentRecorder();
        Task<AgentSessionEnd> run = Task.Run(() => session.Run(recorder, null, cts.Token));
        // the interrupted read() was restarted: the next command arrives as if nothing happened
        target.Send("leak 1");
        WaitUntil(() => StacksByFunction(recorder, target, LeakFunctions).Count == LeakFunctions.Length, "the first command's allocations");
        cts.Cancel();
        Assert.Equal(AgentSessionEnd.Detached, run.Result);
        Assert.Single(target.Send("checksum 1000"));
        Assert.Equal(0, target.CloseAndWait());
    }

    [LinuxFact("gcc")]
    public void A_library_dlopened_by_name_is_found_through_the_programs_RUNPATH_and_seen_from_its_first_call()
    {
        // dlopen takes its caller from its return address: called from the agent, the program's
        // RUNPATH would not be searched (heaptrack's bug). The workload has RUNPATH = the plugin's folder.
        string plugin = AgentTestTarget.Plugin;
        string dir = Path.GetDirectoryName(plugin)!;
        string exe = FixtureBuilder.Build("agent-workload.c", $"-O2 -g -fPIE -pie -ldl -Wl,--enable-new-dtags,-rpath,{dir}", "lt-agent-runpath");
        Assert.Contains("RUNPATH", Tools.Run("readelf", "-d", exe));
        using AgentTestTarget target = AgentTestTarget.SpawnCommand(new[] { exe, "2" });
        using var cts = new CancellationTokenSource();
        using AgentSession session = AgentSession.Attach(target.Pid, Options(), CancellationToken.None);
        var recorder = new AgentRecorder();
        Task<AgentSessionEnd> run = Task.Run(() => session.Run(recorder, null, cts.Token));
        List<string> said = target.Send($"load {Path.GetFileName(plugin)} 5"); // a bare name: searched
        Assert.Empty(said); // no "ERROR <dlerror>": found through the RUNPATH
        Dictionary<string, int> stacks = new();
        WaitUntil(() =>
        {
            stacks = StacksByFunction(recorder, target, new[] { "plugin_allocate" });
            return stacks.Count == 1 && CountersOf(recorder, stacks["plugin_allocate"]).ExpiredCount == 5;
        }, "all five blocks of the plugin's first call");
        cts.Cancel();
        Assert.Equal(AgentSessionEnd.Detached, run.Result);
        Assert.Equal(0, target.CloseAndWait());
    }

    [LinuxFact("gcc")]
    public void Attach_detach_attach_again_reuses_the_loaded_agent()
    {
        using AgentTestTarget target = AgentTestTarget.Spawn("2");
        for (int round = 0; round < 2; round++)
        {
            using var cts = new CancellationTokenSource();
            using AgentSession session = AgentSession.Attach(target.Pid, Options(), CancellationToken.None);
            Assert.Equal(round == 1, session.Reused);
            Assert.Equal(round, session.Hello.EarlierSessions);
            var recorder = new AgentRecorder();
            Task<AgentSessionEnd> run = Task.Run(() => session.Run(recorder, null, cts.Token));
            target.Send("leak 1");
            WaitUntil(() => StacksByFunction(recorder, target, LeakFunctions) is var s && s.Count == LeakFunctions.Length &&
                s.Values.All(id => CountersOf(recorder, id).ExpiredCount == 1), "round " + round);
            cts.Cancel();
            Assert.Equal(AgentSessionEnd.Detached, run.Result);
        }
        Assert.Single(File.ReadAllLines($"/proc/{target.Pid}/maps"), l => l.Contains(AgentPlacement.LibraryName) && l.Contains("r-xp"));
        Assert.Equal(0, target.CloseAndWait());
    }

    [LinuxFact("gcc")]
    public void Injection_while_eight_threads_hammer_malloc_never_hangs_or_crashes()
    {
        using AgentTestTarget target = AgentTestTarget.Spawn("8");
        var clock = Stopwatch.StartNew();
        for (int round = 0; round < 20; round++)
        {
            using var cts = new CancellationTokenSource();
            using AgentSession session = AgentSession.Attach(target.Pid, Options(1), CancellationToken.None);
            var recorder = new AgentRecorder();
            Task<AgentSessionEnd> run = Task.Run(() => session.Run(recorder, null, cts.Token));
            WaitUntil(() => recorder.Stats is { Allocations: > 0 }, "allocations of round " + round, 10);
            cts.Cancel();
            Assert.True(run.Wait(TimeSpan.FromSeconds(10)), "detach of round " + round);
            Assert.Equal(AgentSessionEnd.Detached, run.Result);
            Assert.True(target.Alive, "alive after round " + round);
        }
        Assert.Single(target.Send("checksum 1000"));
        Assert.Equal(0, target.CloseAndWait());
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(90), $"20 rounds took {clock.Elapsed}");
    }

    [LinuxFact("gcc")]
    public void Controller_gone_the_agent_unhooks_itself_and_the_target_finishes_as_untraced()
    {
        string expected;
        int untracedStatus;
        using (AgentTestTarget plain = AgentTestTarget.Spawn("2"))
        {
            expected = plain.Send("checksum 300000").Single();
            untracedStatus = plain.CloseAndWait();
        }
        using AgentTestTarget target = AgentTestTarget.Spawn("2");
        AgentSession session = AgentSession.Attach(target.Pid, Options(), CancellationToken.None);
        var recorder = new AgentRecorder();
        var stopPumping = new ManualResetEventSlim();
        Task run = Task.Run(() => session.Run(recorder, null, CancellationToken.None, () => stopPumping.IsSet));
        target.Send("leak 2");
        WaitUntil(() => recorder.Stats is { Allocations: > 100 }, "allocations");
        Assert.Equal(expected, target.Send("checksum 300000").Single()); // traced: the same result
        // The controller vanishes without a word (as when pwsh and the helper are killed with -9):
        // its end of the socket closes, nothing else.
        session.Connection.Dispose();
        session.Dispose();
        // the agent restores the slots; then the workload runs on as before
        WaitUntil(() => GotSlots.Restored(target.Pid), "the agent to restore the relocation slots", 10);
        Assert.Equal(expected, target.Send("checksum 300000").Single());
        Assert.Equal(untracedStatus, target.CloseAndWait());
        stopPumping.Set();
    }

    [LinuxFact("gcc")]
    public void Fork_children_are_not_traced_and_the_count_is_reported()
    {
        var (session, target) = AgentTestTarget.Launch(Options());
        using (session)
        using (target)
        {
            var recorder = new AgentRecorder();
            using var cts = new CancellationTokenSource();
            Task<AgentSessionEnd> run = Task.Run(() => session.Run(recorder, null, cts.Token));
            List<string> output = target.Send("fork");
            Assert.Single(output, l => l.StartsWith("CHILD ", StringComparison.Ordinal));
            target.Send("leak 1");
            WaitUntil(() => recorder.Stats is { Forks: 1 } && StacksByFunction(recorder, target, LeakFunctions).Count == LeakFunctions.Length, "the fork count");
            // the child ran checksum(): 20,000 allocations the parent's agent must not have seen
            Assert.Empty(StacksByFunction(recorder, target, new[] { "checksum" }));
            cts.Cancel();
            Assert.Equal(AgentSessionEnd.Detached, run.Result);
            target.CloseAndWait();
            Assert.Equal(0, session.WaitForExit(TimeSpan.FromSeconds(10)));
        }
    }

    [LinuxFact("gcc")]
    public void Sampling_estimates_totals_and_flags_them()
    {
        AgentSessionOptions options = Options();
        options.SampleInterval = 16 * 1024;
        var (session, target) = AgentTestTarget.Launch(options);
        using (session)
        using (target)
        {
            var recorder = new AgentRecorder();
            using var cts = new CancellationTokenSource();
            Task<AgentSessionEnd> run = Task.Run(() => session.Run(recorder, null, cts.Token));
            target.Send("leak 2000"); // 2,000 blocks of 100 B from leak_malloc: 200 kB, ~12 samples expected
            target.Send("churn 200000");
            Dictionary<string, int> stacks = new();
            WaitUntil(() =>
            {
                stacks = StacksByFunction(recorder, target, new[] { "leak_malloc", "leak_valloc" });
                return stacks.Count == 2 && stacks.Values.All(id => CountersOf(recorder, id).ExpiredCount > 0);
            }, "sampled leaks to expire");
            AgentCounters malloc = CountersOf(recorder, stacks["leak_malloc"]);
            Assert.True(malloc.AllocationCount < 200, $"{malloc.AllocationCount} of 2000 small blocks sampled");
            Assert.InRange(malloc.EstimatedAllocatedBytes, 200_000 / 3, 200_000 * 3);
            AgentCounters valloc = CountersOf(recorder, stacks["leak_valloc"]);
            Assert.InRange(valloc.EstimatedAllocatedBytes, 1_600_000 / 2, 1_600_000 * 2);
            lock (recorder.SyncRoot) Assert.All(recorder.Expired, e => Assert.True(e.Sampled));
            cts.Cancel();
            Assert.Equal(AgentSessionEnd.Detached, run.Result);
            target.CloseAndWait();
        }
    }

    [LinuxFact("gcc", "unshare")]
    public void Attach_into_another_mount_namespace_places_the_agent_through_proc_root()
    {
        if (Interop.Libc.GetEUid() != 0) return; // a private mount namespace needs root
        // The target sees a /tmp of its own (a fresh tmpfs), as in a container: neither our agent
        // path nor our socket folder exists there.
        string dir = Path.GetDirectoryName(AgentTestTarget.Workload)!;
        using AgentTestTarget target = AgentTestTarget.SpawnCommand(new[]
        {
            "/usr/bin/unshare", "-m", "/bin/sh", "-c", $"cd '{dir}' && mount -t tmpfs leaktools-test /tmp && exec ./{Path.GetFileName(AgentTestTarget.Workload)} 2",
        });
        Assert.NotEqual(new FileInfo("/proc/self/ns/mnt").LinkTarget, new FileInfo($"/proc/{target.Pid}/ns/mnt").LinkTarget);
        using var cts = new CancellationTokenSource();
        using (AgentSession session = AgentSession.Attach(target.Pid, Options(), CancellationToken.None))
        {
            var recorder = new AgentRecorder();
            Task<AgentSessionEnd> run = Task.Run(() => session.Run(recorder, null, cts.Token));
            target.Send("leak 1");
            WaitUntil(() => recorder.Stats is { Allocations: > 100 } && StacksByFunction(recorder, target, new[] { "leak_malloc" }).Count == 1, "leaks seen in the namespace");
            cts.Cancel();
            Assert.Equal(AgentSessionEnd.Detached, run.Result);
        }
        string mapped = File.ReadAllLines($"/proc/{target.Pid}/maps").First(l => l.Contains(AgentPlacement.LibraryName));
        Assert.Matches(@" /tmp/leaktools-agent-[0-9a-f]{16}/libleaktools-agent\.so$", mapped);
        Assert.False(File.Exists(mapped[mapped.IndexOf('/')..]), "the copy lives in the target's /tmp, not ours");
        Assert.Empty(Directory.GetDirectories($"/proc/{target.Pid}/root/tmp", "leaktools-????????????????")); // socket folder removed
        Assert.Equal(0, target.CloseAndWait());
    }

    [LinuxFact("gcc")]
    public void Attach_under_a_seccomp_filter_is_refused_cleanly()
    {
        using AgentTestTarget target = AgentTestTarget.Spawn("0", "seccomp");
        Assert.Matches(@"Seccomp:\s+2\n", target.Status);
        var ex = Assert.Throws<LeakToolsException>(() => AgentSession.Attach(target.Pid, Options(), CancellationToken.None));
        Assert.Equal("AgentUnavailable", ex.ErrorId);
        Assert.Contains("seccomp", ex.Message);
        Assert.Matches(@"TracerPid:\s+0\n", target.Status); // refused before any ptrace
        Assert.Single(target.Send("checksum 1000"));
    }

    [LinuxFact("gcc")]
    public void Attach_to_a_static_binary_is_refused_cleanly()
    {
        string exe = FixtureBuilder.Build("agent-workload.c", "-O2 -static", "lt-agent-static");
        var (inRead, inWrite) = Interop.Spawn.Pipe();
        var (outRead, outWrite) = Interop.Spawn.Pipe();
        int pid = Interop.Spawn.Start(new[] { exe }, new Dictionary<int, int> { [0] = inRead, [1] = outWrite });
        try
        {
            Thread.Sleep(200);
            var ex = Assert.Throws<LeakToolsException>(() => AgentSession.Attach(pid, Options(), CancellationToken.None));
            Assert.Equal("AgentUnavailable", ex.ErrorId);
            Assert.Contains("statically linked", ex.Message);
        }
        finally
        {
            Interop.Libc.Close(inWrite);
            Interop.Libc.Close(inRead);
            Interop.Libc.Close(outRead);
            Interop.Libc.Close(outWrite);
            Interop.Libc.Kill(pid, 9);
            unsafe { int st; Interop.Ptrace.WaitPid(pid, &st, 0); }
        }
    }
}
