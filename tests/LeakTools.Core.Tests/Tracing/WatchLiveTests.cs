using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using LeakTools.Core.Hosting;
using LeakTools.Tests.Shared;
using Xunit;
using Xunit.Abstractions;

namespace LeakTools.Core.Tests.Tracing;

/// <summary>Both engines (the in-process agent and the breakpoint engine) on live fixtures, through
/// the helper host (the fixtures are started with System.Diagnostics.Process, whose children
/// in-process ptrace must not touch).</summary>
public sealed class WatchLiveTests : IDisposable
{
    private readonly HelperClient _helper;
    private readonly ITestOutputHelper _log;

    public WatchLiveTests(ITestOutputHelper log)
    {
        _log = log;
        _ = AgentTestTarget.AgentPath; // staged by the build (StagedAgent points the helper at it), else a clear failure
        _helper = HelperClient.Start();
    }

    private static WatchRequest On(string engine, WatchRequest r)
    {
        r.Engine = engine;
        r.EngineExplicit = true;
        return r;
    }

    public void Dispose() => _helper.Dispose();

    private static string Server() => AllocServer.Build();

    private static int SiteLine(string marker) => AllocServer.SiteLine(marker);

    private sealed record Result(List<AllocationStack> Stacks, List<AllocationProblem> Problems, List<string> Output, List<string> Messages, HelperFailure? Failure);

    private Result Watch(WatchRequest request, Action? whileRunning = null, CancellationToken cancel = default)
    {
        var stacks = new List<AllocationStack>();
        var problems = new List<AllocationProblem>();
        var output = new List<string>();
        var messages = new List<string>();
        HelperFailure? failure = null;
        bool started = false;
        foreach (HelperReply r in _helper.Run("alloc.watch", request, cancel))
        {
            if (r.Kind == HelperReplyKind.Item)
            {
                var m = r.Data!.Value.Deserialize<WatchMessage>(HelperJson.Options)!;
                if (m.Stack is not null) stacks.Add(m.Stack);
                if (m.Problem is not null) problems.Add(m.Problem);
                if (m.Output is not null) output.Add(m.Output);
                if (m.Progress is not null && !started)
                {
                    started = true;
                    whileRunning?.Invoke();
                }
            }
            else if (r.Kind is HelperReplyKind.Verbose or HelperReplyKind.Warning) messages.Add(r.Kind + ": " + r.Message);
            else if (r.Kind == HelperReplyKind.Done) failure = r.Failure;
        }
        foreach (string m in messages) _log.WriteLine(m);
        return new Result(stacks, problems, output, messages, failure);
    }

    private static string Status(int pid) => File.ReadAllText($"/proc/{pid}/status");

    private static string Ask(FixtureProcess f, string command) => AllocServer.Ask(f, command);

    [LinuxTheory("gcc")]
    [InlineData("Agent")]
    [InlineData("Breakpoint")]
    public void Threads_started_after_attach_are_traced_and_stacks_name_the_call_sites(string engine)
    {
        using FixtureProcess f = FixtureProcess.Start(Server());
        var result = Watch(On(engine, new WatchRequest { Pid = f.Pid, ExpireSeconds = 0.3, DurationSeconds = 3 }), () => f.Send("start 3"));
        Assert.Null(result.Failure);
        var final = result.Stacks.Where(s => s.Final).ToList();
        foreach (var s in final) _log.WriteLine($"{s.StackId} {s.Function} {s.Location} expired {s.ExpiredCount} live {s.LiveCount} alloc {s.AllocationCount}");

        // Each leaking site, by function and line, with the counts the workers leak (3 threads x 200 rounds).
        var expected = new (string Function, string Site, long Count, long Size)[]
        {
            ("leak_malloc", "malloc", 60, 1000), ("leak_calloc", "calloc", 30, 200),
            ("leak_realloc", "realloc", 24, 3000), ("leak_memalign", "posix_memalign", 15, 700),
        };
        foreach (var (function, site, count, size) in expected)
        {
            AllocationStack s = Assert.Single(final, s => s.Function == function);
            Assert.Equal($"alloc-server.c:{SiteLine(site)}", s.Location);
            Assert.Equal(count, s.ExpiredCount);
            Assert.Equal(count * size, s.ExpiredBytes);
            Assert.Equal(count, s.LiveCount);
            Assert.Equal(0, s.FreedAfterExpiryCount);
            // Unwound with CFI through -O2 code without frame pointers, up to the thread's start.
            Assert.Contains(s.Frames, x => x.Function == "worker");
            Assert.Contains(s.Frames, x => x.Function is "start_thread" or "clone3" or "__clone3");
        }
        // churn's blocks (malloc, realloc moving and in place, realloc(NULL, n), realloc(p, 0)) are
        // all freed in time: a wrong realloc rule would leave some live long enough to expire.
        Assert.DoesNotContain(final, s => s.Function == "churn");
        Assert.Contains(result.Stacks, s => !s.Final && s.Function == "leak_malloc"); // reported when it first expired
        Assert.All(result.Stacks, s => Assert.Equal(engine, s.Engine));
        if (engine == "Breakpoint") Assert.Contains(result.Messages, m => m.Contains("nested calls skipped"));
        Assert.Matches(@"TracerPid:\s+0\n", Status(f.Pid));
    }

    [LinuxTheory("gcc")]
    [InlineData("Agent")]
    [InlineData("Breakpoint")]
    public void Checksum_and_fork_children_are_the_same_traced_and_the_target_runs_on_untraced(string engine)
    {
        using FixtureProcess f = FixtureProcess.Start(Server());
        string sum = Ask(f, "sum");
        string fork = Ask(f, "fork");
        string tracedSum = "", tracedFork = "";
        // The session ends once both ran traced (a -Duration could end first on a loaded machine).
        using var done = new CancellationTokenSource();
        var result = Watch(On(engine, new WatchRequest { Pid = f.Pid, ExpireSeconds = 30, DurationSeconds = 120 }), () =>
        {
            tracedSum = Ask(f, "sum");
            tracedFork = Ask(f, "fork");
            done.Cancel();
        }, done.Token);
        Assert.Null(result.Failure);
        Assert.StartsWith("sum ", sum);
        Assert.Equal(sum, tracedSum);
        // The fork child ran with its copy of the hooks removed: same exit code as untraced.
        Assert.Equal(fork.Split(' ').Skip(2), tracedFork.Split(' ').Skip(2));
        Assert.Contains(result.Messages, m => m.Contains(engine == "Agent" ? "children are not traced" : "forked child"));
        Assert.Matches(@"TracerPid:\s+0\n", Status(f.Pid));
        Assert.Equal(sum, Ask(f, "sum"));
        if (engine == "Agent") return;
        // The trampoline page is unmapped again.
        string scratch = System.Text.RegularExpressions.Regex.Match(string.Join("\n", result.Messages), "trampolines at 0x([0-9a-f]+)").Groups[1].Value;
        Assert.NotEmpty(scratch);
        Assert.DoesNotContain(File.ReadAllText($"/proc/{f.Pid}/maps").Split('\n'), l => l.StartsWith(scratch + "-"));
    }

    [LinuxTheory("gcc")]
    [InlineData("Agent")]
    [InlineData("Breakpoint")]
    public void A_vfork_child_is_followed_until_its_exec_and_an_exec_ends_the_session(string engine)
    {
        using FixtureProcess f = FixtureProcess.Start(Server());
        string spawned = "";
        var result = Watch(On(engine, new WatchRequest { Pid = f.Pid, ExpireSeconds = 30, DurationSeconds = 30 }), () =>
        {
            spawned = Ask(f, "spawn");     // posix_spawn: clone(CLONE_VM|CLONE_VFORK), shares our patched memory
            f.Send("exec");                // the session ends by itself, long before -Duration
        });
        Assert.Null(result.Failure);
        Assert.Equal("spawned rc=0 status=0", spawned);
        Assert.Contains(result.Messages, m => m.Contains("executed a new program"));
        Assert.Matches(@"TracerPid:\s+0\n", Status(f.Pid));
        Assert.Matches(@"Name:\s+sleep\n", Status(f.Pid)); // the new program runs, untraced
    }

    [LinuxFact("gcc")]
    public void A_static_binary_is_traced_through_the_allocator_linked_into_it()
    {
        using FixtureProcess f = FixtureProcess.Start(FixtureBuilder.Build("alloc-server.c", "-O2 -g -static", "lt-alloc-static-g"));
        // the default engine: the agent cannot be loaded into a static binary, the breakpoint engine takes over
        var result = Watch(new WatchRequest { Pid = f.Pid, ExpireSeconds = 0.3, DurationSeconds = 3 }, () => f.Send("start 1"));
        Assert.Null(result.Failure);
        Assert.Contains(result.Messages, m => m.StartsWith("Warning: ", StringComparison.Ordinal) && m.Contains("statically linked") && m.Contains("breakpoint engine"));
        Assert.All(result.Stacks, s => Assert.Equal("Breakpoint", s.Engine));
        foreach (var x in result.Stacks.Where(s => s.Final)) _log.WriteLine($"{x.Function} {x.Location} {x.ExpiredCount} {string.Join(" < ", x.Frames.Select(fr => fr.Function))}");
        Assert.Contains(result.Messages, m => m.Contains("lt-alloc-static-g"));
        AllocationStack s = Assert.Single(result.Stacks, s => s.Final && s.Function == "leak_malloc");
        Assert.Equal($"alloc-server.c:{SiteLine("malloc")}", s.Location);
        Assert.Equal(20, s.AllocationCount);
        Assert.True(s.ExpiredCount > 0);
    }

    [LinuxTheory("gcc")]
    [InlineData(null)]
    [InlineData("Breakpoint")]
    public void A_static_binary_is_traced_from_its_first_allocation_in_launch_mode(string? engine)
    {
        // nothing can be injected at the exec stop (the thread is still inside execve): the hooks go in at the entry point
        string exe = FixtureBuilder.Build("memwatch-memory.c", "-O0 -g -static", "lt-memwatch-static");
        string dir = Directory.CreateTempSubdirectory("leaktools-watch-").FullName;
        try
        {
            var request = new WatchRequest { Program = exe, WorkingDirectory = dir, ExpireSeconds = 10 };
            var result = Watch(engine is null ? request : On(engine, request));
            Assert.Null(result.Failure);
            if (engine is null) Assert.Contains(result.Messages, m => m.StartsWith("Warning: ", StringComparison.Ordinal) && m.Contains("statically linked"));
            Assert.Contains(result.Messages, m => m.Contains("Hooked malloc") && m.Contains("lt-memwatch-static"));
            AllocationProblem p = Assert.Single(result.Problems);
            Assert.Equal((AllocationProblemKind.DoubleFree, 512L), (p.Kind, p.Size));
            Assert.Equal(("main", "memwatch-memory.c:15"), (p.Function, p.Location));
            // the allocator is inside the executable: main, not _start, is where the leak was allocated
            AllocationStack leak = Assert.Single(result.Stacks, s => s.Final && s.UnfreedAtExitCount > 0 && s.Location == "memwatch-memory.c:11");
            Assert.Equal(("main", 1L, 512L), (leak.Function, leak.UnfreedAtExitCount!.Value, leak.UnfreedAtExitBytes!.Value));
            Assert.Contains(result.Messages, m => m.Contains("killed by signal 6"));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [LinuxTheory("gcc")]
    [InlineData("Agent")]
    [InlineData("Breakpoint")]
    public void A_preloaded_allocator_is_found_and_traced_instead_of_the_C_library(string engine)
    {
        const string jemalloc = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2";
        if (!File.Exists(jemalloc)) return; // libjemalloc2 is not installed here
        using FixtureProcess f = FixtureProcess.StartWith(Server(), new[] { "env", "LD_PRELOAD=" + jemalloc });
        var result = Watch(On(engine, new WatchRequest { Pid = f.Pid, ExpireSeconds = 0.3, DurationSeconds = 3 }), () => f.Send("start 2"));
        Assert.Null(result.Failure);
        Assert.Contains(result.Messages, m => m.Contains(jemalloc));
        AllocationStack s = Assert.Single(result.Stacks, s => s.Final && s.Function == "leak_malloc");
        Assert.Equal((40L, 40L), (s.AllocationCount, s.ExpiredCount));
        Assert.Equal("libjemalloc.so.2", s.Frames[0].ModuleName);
        Assert.DoesNotContain(result.Stacks, s => s.Final && s.Function == "churn");
        Assert.Matches(@"TracerPid:\s+0\n", Status(f.Pid));
    }

    [LinuxTheory("gcc")]
    [InlineData("Agent")]
    [InlineData("Breakpoint")]
    public void A_burst_of_frees_larger_than_the_free_log_is_counted_exactly(string engine)
    {
        using FixtureProcess f = FixtureProcess.Start(Server());
        string hoard = "", release = "";
        var result = Watch(On(engine, new WatchRequest { Pid = f.Pid, ExpireSeconds = 0.5, DurationSeconds = 3.5 }), () =>
        {
            hoard = Ask(f, "hoard 10000");
            Thread.Sleep(1200);           // every block expires
            release = Ask(f, "release");  // 10,000 frees back to back: more than the log holds, so some take the slow path
        });
        Assert.Null(result.Failure);
        Assert.Equal(("hoarded 10000", "released 10000"), (hoard, release));
        AllocationStack s = Assert.Single(result.Stacks, s => s.Final && s.Function == "hoard_block");
        Assert.Equal($"alloc-server.c:{SiteLine("hoard")}", s.Location);
        Assert.Equal((10000L, 10000L, 10000L, 0L), (s.AllocationCount, s.ExpiredCount, s.FreedAfterExpiryCount, s.LiveCount));
    }

    /// <summary>The exit status of a run without any tracer (128 + the signal when one ended it, as
    /// the shell says), in its own temporary folder (a core lands there).</summary>
    private static int UntracedStatus(string exe, params string[] args)
    {
        string dir = Directory.CreateTempSubdirectory("leaktools-untraced-").FullName;
        try
        {
            var start = new ProcessStartInfo(exe) { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (string a in args) start.ArgumentList.Add(a);
            using Process p = Process.Start(start)!;
            p.StandardOutput.ReadToEnd();
            p.StandardError.ReadToEnd();
            p.WaitForExit();
            return p.ExitCode;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>The launched program's exit status as the session reported it.</summary>
    private static int TracedStatus(Result r)
    {
        Match m = Regex.Match(string.Join("\n", r.Messages), @"(killed by signal|exited with status) (\d+)");
        Assert.True(m.Success, "the session did not say how the program ended");
        int n = int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
        return m.Groups[1].Value == "killed by signal" ? 128 + n : n;
    }

    /// <summary>Launch mode on <paramref name="exe"/> in a temporary folder (a core lands there).</summary>
    private Result Launch(string engine, string exe, params string[] args) =>
        Launch(new WatchRequest { Engine = engine, Program = exe, Arguments = args });

    private Result Launch(WatchRequest request)
    {
        string dir = Directory.CreateTempSubdirectory("leaktools-watch-").FullName;
        try
        {
            request.WorkingDirectory = dir;
            return Watch(On(request.Engine, request));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static string BadFrees() => FixtureBuilder.Build("bad-frees.c", "-O0 -g", "lt-bad-frees");

    /// <summary>bad-frees <paramref name="mode"/> launched: its one bad free, of the kind and at the
    /// address (its ADDR line) expected, and the program ended as it does untraced.</summary>
    private (Result Result, AllocationProblem Problem) OneBadFree(string engine, string mode, AllocationProblemKind kind)
    {
        string exe = BadFrees();
        Result result = Launch(engine, exe, mode);
        Assert.Null(result.Failure);
        AllocationProblem p = Assert.Single(result.Problems);
        Assert.Equal((kind, engine), (p.Kind, p.Engine));
        string address = Assert.Single(result.Output, l => l.StartsWith("ADDR ", StringComparison.Ordinal))[5..];
        Assert.Equal(address, $"0x{p.Address:x}");
        Assert.Equal(UntracedStatus(exe, mode), TracedStatus(result));
        return (result, p);
    }

    private static string BadFreesSite(string marker) =>
        "bad-frees.c:" + (File.ReadAllLines(Path.Combine(RepoPaths.Fixtures, "bad-frees.c")).Select((l, i) => (l, i)).First(x => x.l.Contains("SITE:" + marker + " ")).i + 1);

    private static bool At(LeakTools.StackFrame f, string function, string site) => f.Function == function && f.File is not null && $"{Path.GetFileName(f.File)}:{f.Line}" == site;

    [LinuxTheory("gcc")]
    [InlineData("Agent")]
    [InlineData("Breakpoint")]
    public void Launch_mode_reports_the_memwatch_example_double_free_and_the_block_never_freed(string engine)
    {
        string exe = FixtureBuilder.Build("memwatch-memory.c", "-O0 -g", "lt-memwatch");
        Result result = Launch(engine, exe);
        Assert.Null(result.Failure);
        AllocationProblem p = Assert.Single(result.Problems);
        Assert.Equal((AllocationProblemKind.DoubleFree, engine), (p.Kind, p.Engine));
        Assert.Equal(512, p.Size);
        Assert.Equal(("main", "memwatch-memory.c:15"), (p.Function, p.Location));
        Assert.Equal("__GI___libc_free", p.Frames[0].Function);
        Assert.Contains(p.FirstFreeFrames!, x => x.Function == "main" && x.Line == 14);
        Assert.Contains(p.AllocationFrames!, x => x.Function == "main" && x.Line == 10);
        // the first free's and the allocation's block is the one freed twice
        Assert.Equal("__GI___libc_free", p.FirstFreeFrames![0].Function);
        Assert.Equal("__GI___libc_malloc", p.AllocationFrames![0].Function);
        AllocationStack leak = Assert.Single(result.Stacks, s => s.Final && s.UnfreedAtExitCount > 0 && s.Location == "memwatch-memory.c:11");
        Assert.Equal((1L, 512L, engine), (leak.UnfreedAtExitCount!.Value, leak.UnfreedAtExitBytes!.Value, leak.Engine));
        Assert.Contains(result.Output, l => l.Contains("double free detected"));   // glibc's own words: it aborted as untraced
        Assert.Equal(UntracedStatus(exe), TracedStatus(result));
    }

    [LinuxTheory("gcc")]
    [InlineData("Agent")]
    [InlineData("Breakpoint")]
    public void Launch_mode_reports_a_free_of_a_pointer_never_allocated_with_its_stack(string engine)
    {
        var (result, p) = OneBadFree(engine, "invalid", AllocationProblemKind.InvalidFree);
        Assert.Equal(134, TracedStatus(result));   // SIGABRT, as untraced
        Assert.Null(p.Size);
        Assert.Equal(("free_inside", BadFreesSite("inside")), (p.Function, p.Location));
        Assert.Equal("__GI___libc_free", p.Frames[0].Function);
        Assert.Contains(p.Frames, f => f.Function == "main");
        Assert.Null(p.FirstFreeFrames);
        Assert.Null(p.AllocationFrames);
        // the block it pointed into, and the block main leaks, were never freed (glibc aborted)
        Assert.Single(result.Stacks, s => s.Final && s.UnfreedAtExitBytes == 96 && s.Location == BadFreesSite("make"));
        Assert.Single(result.Stacks, s => s.Final && s.UnfreedAtExitBytes == 40 && s.Location == BadFreesSite("leak"));
    }

    [LinuxTheory("gcc")]
    [InlineData("Agent")]
    [InlineData("Breakpoint")]
    public void Launch_mode_a_block_freed_again_after_its_address_was_allocated_anew_is_no_double_free(string engine)
    {
        string exe = BadFrees();
        Result result = Launch(engine, exe, "reuse");
        Assert.Null(result.Failure);
        Assert.Contains("SAME 1", result.Output);   // the second block had the first one's address
        Assert.Empty(result.Problems);
        AllocationStack leak = Assert.Single(result.Stacks, s => s.Final && s.UnfreedAtExitCount > 0);
        Assert.Equal((BadFreesSite("leak"), 40L), (leak.Location, leak.UnfreedAtExitBytes!.Value));
        Assert.Equal(0, TracedStatus(result));
        Assert.Equal(UntracedStatus(exe, "reuse"), TracedStatus(result));
    }

    [LinuxTheory("gcc")]
    [InlineData("Agent")]
    [InlineData("Breakpoint")]
    public void Launch_mode_reports_a_realloc_of_a_block_already_freed_as_a_double_free(string engine)
    {
        var (_, p) = OneBadFree(engine, "realloc", AllocationProblemKind.DoubleFree);
        Assert.Equal(48, p.Size);
        Assert.Equal(("grow_block", BadFreesSite("grow")), (p.Function, p.Location));
        Assert.Equal("__GI___libc_realloc", p.Frames[0].Function);
        Assert.Contains(p.FirstFreeFrames!, f => At(f, "release_block", BadFreesSite("release")));
        Assert.Contains(p.AllocationFrames!, f => At(f, "make_block", BadFreesSite("make")));
    }

    [LinuxFact("gcc")]
    public void Launch_mode_without_free_checks_reports_no_bad_free_and_the_program_ends_the_same()
    {
        string exe = FixtureBuilder.Build("memwatch-memory.c", "-O0 -g", "lt-memwatch");
        string[] environment = System.Environment.GetEnvironmentVariables().Keys.Cast<string>()
            .Select(k => $"{k}={System.Environment.GetEnvironmentVariable(k)}").Append("LEAKTOOLS_FREE_CHECKS=0").ToArray();
        Result result = Launch(new WatchRequest { Engine = "Agent", Program = exe, Environment = environment });
        Assert.Null(result.Failure);
        Assert.Empty(result.Problems);
        Assert.DoesNotContain(result.Messages, m => m.Contains("Every free is checked"));
        Assert.Equal(UntracedStatus(exe), TracedStatus(result));
    }

    [LinuxTheory("gcc")]
    [InlineData("Agent")]
    [InlineData("Breakpoint")]
    public void A_second_tracer_is_refused_naming_the_first(string engine)
    {
        using FixtureProcess f = FixtureProcess.Start(Server());
        using var cancel = new CancellationTokenSource();
        var first = Task.Run(() => Watch(On(engine, new WatchRequest { Pid = f.Pid, ExpireSeconds = 10, DurationSeconds = 60 }), cancel: cancel.Token));
        try
        {
            if (engine == "Agent") AllocServer.WaitUntilAgent(f.Pid); else AllocServer.WaitUntilTraced(f.Pid);
            using HelperClient second = HelperClient.Start();
            HelperFailure? failure = second.Run("alloc.watch", On(engine, new WatchRequest { Pid = f.Pid, DurationSeconds = 1 })).Last().Failure;
            Assert.NotNull(failure);
            if (engine == "Agent")
            {
                // the agent serves one session at a time
                Assert.Equal(("AgentBusy", FailureKind.ResourceBusy), (failure!.ErrorId, failure.Kind));
                Assert.Contains("another Watch-Allocation", failure.Message);
                return;
            }
            Assert.Equal(("AlreadyTraced", FailureKind.ResourceBusy), (failure!.ErrorId, failure.Kind));
            Assert.Contains($"traced by process {_helper.ProcessId}", failure.Message); // the helper, not its tracer thread
        }
        finally
        {
            cancel.Cancel();
            first.Wait(TimeSpan.FromSeconds(60));
        }
        Assert.Matches(@"TracerPid:\s+0\n", Status(f.Pid));
    }
}
