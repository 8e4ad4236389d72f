using LeakTools.Core.Reports;
using LeakTools.Tests.Shared;
using Xunit;

namespace LeakTools.Core.Tests.Reports;

/// <summary>ValgrindRun against the real valgrind: fixtures built with gcc, run under memcheck,
/// stopped the way Invoke-Valgrind stops them; the peers are valgrind's own text report and addr2line.</summary>
public class ValgrindRunTests
{
    private static (List<ValgrindEvent> Events, ValgrindRunResult Result) Run(ValgrindOptions options, TimeSpan? cancelAfter = null)
    {
        using var cancel = new CancellationTokenSource();
        if (cancelAfter is TimeSpan after) cancel.CancelAfter(after);
        using var run = ValgrindRun.Start(options);
        var events = run.Events(cancel.Token).ToList();
        return (events, run.Result());
    }


    private static bool GroupAlive(int pgid) => Tools.Run("ps", "-e", "-o", "pgid=").Split('\n').Any(l => l.Trim() == pgid.ToString());

    [LinuxFact("gcc", "valgrind")]
    public void Memwatch_example_agrees_with_valgrinds_own_text_report()
    {
        string exe = FixtureBuilder.Build("memwatch-memory.c");
        var (_, result) = Run(new ValgrindOptions { Program = exe });
        var r = result.Report;
        var leak = Assert.Single(r.Records, x => x.Kind == LeakKind.DefinitelyLost);
        Assert.Equal((512L, 1L, "main", 11), (leak.Bytes!.Value, leak.Blocks!.Value, leak.Function, leak.Line!.Value));
        var free = Assert.Single(r.Records, x => x.Kind == LeakKind.InvalidFree);
        Assert.Equal(15, free.Line);
        Assert.Equal(exe, free.Frames[1].Module);
        Assert.Null(result.StopSignal);
        Assert.Equal(0, result.ExitCode);

        // valgrind's text report of the same program is the reference for every figure
        string log = Path.Combine(Path.GetTempPath(), $"leaktools-vg-{Guid.NewGuid():N}.txt");
        try
        {
            Tools.Run("valgrind", "--leak-check=full", "--show-leak-kinds=all", "--log-file=" + log, exe);
            var text = Assert.Single(ValgrindLogReader.Read(log)).Summary;
            var s = r.Summary;
            Assert.Equal((text.InUseBytes, text.InUseBlocks, text.Allocs, text.BytesAllocated), (s.InUseBytes, s.InUseBlocks, s.Allocs, s.BytesAllocated));
            Assert.Equal((text.DefinitelyLost, text.IndirectlyLost, text.PossiblyLost, text.StillReachable, text.Suppressed),
                         (s.DefinitelyLost, s.IndirectlyLost, s.PossiblyLost, s.StillReachable, s.Suppressed));
            Assert.Equal((text.Errors, text.ErrorContexts, text.SuppressedErrors), (s.Errors, s.ErrorContexts, s.SuppressedErrors));
            // the one known difference: valgrind's text counts the invalid free as a free, its xtree counts freed blocks
            Assert.Equal((2L, 1L), (text.Frees!.Value, s.Frees!.Value));
        }
        finally
        {
            File.Delete(log);
        }
    }

    [LinuxFact("gcc", "valgrind", "addr2line")]
    public void Unknown_frames_of_stripped_programs_resolve_with_addr2line_at_their_module_offset()
    {
        foreach (string pie in new[] { "", " -no-pie" })
        {
            string stripped = FixtureBuilder.Build("valgrind-stripped.c", "-O0 -g -s" + pie);
            string withSymbols = FixtureBuilder.Build("valgrind-stripped.c", "-O0 -g" + pie);
            var (_, result) = Run(new ValgrindOptions { Program = stripped });
            var leak = Assert.Single(result.Report.Records, x => x.Kind == LeakKind.DefinitelyLost);
            var own = leak.Frames.Where(f => f.Module == stripped).ToList();
            Assert.Equal(3, own.Count);
            Assert.All(own, f => Assert.Null(f.Function)); // ??? in valgrind's report
            Assert.All(own, f => Assert.NotEqual(0UL, f.ModuleOffset));
            if (pie.Length > 0) Assert.All(own, f => Assert.Equal(f.Address, f.ModuleOffset)); // ET_EXEC: file address = runtime address
            string[] names = Tools.Run("addr2line", new[] { "-f", "-e", withSymbols }.Concat(own.Select(f => $"0x{f.ModuleOffset:x}")).ToArray())
                .Split('\n').Where((_, i) => i % 2 == 0).Take(3).ToArray();
            Assert.Equal(new[] { "make_buffer", "make_record", "main" }, names);
        }
    }

    [LinuxFact("gcc", "valgrind", "addr2line")]
    public void Reports_made_without_load_addresses_learn_them_from_the_frames_valgrind_named()
    {
        // -rdynamic puts main into .dynsym, so valgrind names it though the program is stripped;
        // the static functions stay ???. A plain valgrind run, as a CI job would make it.
        string stripped = FixtureBuilder.Build("valgrind-stripped.c", "-O0 -g -s -rdynamic");
        string withSymbols = FixtureBuilder.Build("valgrind-stripped.c", "-O0 -g -rdynamic");
        string dir = Directory.CreateTempSubdirectory("leaktools-vg").FullName;
        try
        {
            string xml = Path.Combine(dir, "r.xml"), txt = Path.Combine(dir, "r.txt");
            Tools.Run("valgrind", "--leak-check=full", "--xml=yes", "--xml-file=" + xml, "--log-file=/dev/null", stripped);
            Tools.Run("valgrind", "--leak-check=full", "--log-file=" + txt, stripped);
            foreach (string report in new[] { xml, txt })
            {
                var leak = Assert.Single(Assert.Single(ValgrindLogReader.Read(report)).Records, x => x.Kind == LeakKind.DefinitelyLost);
                var own = leak.Frames.Where(f => f.Module == stripped).ToList();
                Assert.Equal(new string?[] { null, null, "main" }, own.Select(f => f.Function));
                string[] names = Tools.Run("addr2line", new[] { "-f", "-e", withSymbols }.Concat(own.Select(f => $"0x{f.ModuleOffset:x}")).ToArray())
                    .Split('\n').Where((_, i) => i % 2 == 0).Take(3).ToArray();
                Assert.Equal(new[] { "make_buffer", "make_record", "main" }, names);
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [LinuxFact("gcc", "valgrind")]
    public void Duration_stops_the_daemon_with_SIGINT_and_its_output_passes_through()
    {
        string exe = FixtureBuilder.Build("valgrind-daemon.c");
        var (events, result) = Run(new ValgrindOptions { Program = exe, Duration = TimeSpan.FromSeconds(1.5) });
        Assert.Equal("SIGINT", result.StopSignal);
        Assert.Equal(0, result.ExitCode); // the daemon ends cleanly on SIGINT
        Assert.Contains(events, e => e.Kind == ValgrindEventKind.Stdout && e.Text.StartsWith("READY pid="));
        Assert.Contains(events, e => e.Kind == ValgrindEventKind.Stdout && e.Text.StartsWith("stopped after "));
        Assert.Contains(events, e => e == new ValgrindEvent(ValgrindEventKind.Stderr, "daemon: serving requests"));
        Assert.Contains(events, e => e.Kind == ValgrindEventKind.Verbose && e.Text.Contains("SIGINT"));
        var leak = Assert.Single(result.Report.Records, x => x.Kind == LeakKind.DefinitelyLost);
        Assert.Equal(("remember_request", FixtureSource.LineOf("valgrind-daemon.c", "leaked every tick")), (leak.Function, leak.Line!.Value));
        Assert.True(leak.Blocks > 5);
        Assert.Equal(leak.Blocks * 1024, leak.Bytes);
        Assert.DoesNotContain(result.Report.Records, x => x.Kind == LeakKind.FatalSignal);
        Assert.InRange(result.Report.Summary.Elapsed!.Value.TotalSeconds, 1.0, 30);
    }

    [LinuxFact("gcc", "valgrind", "ps")]
    public void A_program_that_ignores_SIGINT_gets_SIGTERM_and_its_forked_child_is_not_left_running()
    {
        string exe = FixtureBuilder.Build("valgrind-daemon.c");
        int pid = 0;
        var options = new ValgrindOptions { Program = exe, Arguments = new[] { "ignore-int", "fork" }, Duration = TimeSpan.FromSeconds(1), StopGrace = TimeSpan.FromSeconds(1) };
        using (var run = ValgrindRun.Start(options))
        {
            pid = run.ProcessId;
            var events = run.Events(CancellationToken.None).ToList();
            var result = run.Result();
            Assert.Equal("SIGTERM", result.StopSignal);
            Assert.Contains(events, e => e.Kind == ValgrindEventKind.Warning && e.Text.Contains("sending SIGTERM"));
            Assert.Contains(events, e => e.Kind == ValgrindEventKind.Warning && e.Text.Contains("left processes running"));
            Assert.Equal("SIGTERM", result.Report.Summary.Signal);
            Assert.DoesNotContain(result.Report.Records, x => x.Kind == LeakKind.FatalSignal); // our own stop signal is not a finding
            Assert.Contains(result.Report.Records, x => x.Kind == LeakKind.DefinitelyLost && x.Function == "remember_request");
            Assert.Equal(128 + 15, result.ExitCode);
        }
        Assert.False(GroupAlive(pid), $"processes of group {pid} are still running");
    }

    [LinuxFact("gcc", "valgrind")]
    public void Cancel_stops_the_program_and_the_report_is_still_read()
    {
        string exe = FixtureBuilder.Build("valgrind-daemon.c");
        // Cancel once the program serves requests (each one leaks), not after a fixed time: under
        // load valgrind may not have started the program within any given window.
        using var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var run = ValgrindRun.Start(new ValgrindOptions { Program = exe });
        var events = new List<ValgrindEvent>();
        foreach (var e in run.Events(cancel.Token))
        {
            events.Add(e);
            if (e.Text is not null && e.Text.Contains("serving requests")) cancel.CancelAfter(TimeSpan.FromMilliseconds(300));
        }
        var result = run.Result();
        Assert.Equal("SIGINT", result.StopSignal);
        Assert.Contains(events, e => e.Kind == ValgrindEventKind.Verbose && e.Text.Contains("the command was stopped"));
        Assert.True(result.Report.Summary.Complete);
        Assert.Contains(result.Report.Records, x => x.Kind == LeakKind.DefinitelyLost);
    }

    [LinuxFact("gcc", "valgrind")]
    public void Programs_started_by_the_program_get_reports_of_their_own_with_trace_children()
    {
        string exe = FixtureBuilder.Build("memwatch-memory.c");
        var (_, result) = Run(new ValgrindOptions { Program = "/bin/sh", Arguments = new[] { "-c", exe + "; exit 5" }, ExtraArguments = new[] { "--trace-children=yes" } });
        Assert.Equal(5, result.ExitCode);
        Assert.DoesNotContain(result.Report.Records, x => x.Kind == LeakKind.DefinitelyLost && x.Bytes == 512);
        var child = Assert.Single(result.ChildReports);
        Assert.Equal(11, Assert.Single(child.Records, x => x.Kind == LeakKind.DefinitelyLost).Line);
        Assert.Equal(exe, child.Summary.Command);
        Assert.NotEqual(result.Report.Summary.ProcessId, child.Summary.ProcessId);
    }

    [LinuxFact("valgrind")]
    public void A_program_that_exits_at_once_still_gives_its_report_and_exit_code()
    {
        var (_, result) = Run(new ValgrindOptions { Program = "/bin/sh", Arguments = new[] { "-c", "exit 3" }, Duration = TimeSpan.FromSeconds(30) });
        Assert.Equal(3, result.ExitCode);
        Assert.Null(result.StopSignal);
        Assert.True(result.Report.Summary.Complete);
        Assert.NotNull(result.Report.Summary.Allocs);
        Assert.Equal(0L, result.Report.Summary.DefinitelyLost);
    }

    [LinuxFact("valgrind")]
    public void Valgrind_refusing_its_options_is_ValgrindFailed_with_its_message()
    {
        var e = Assert.Throws<LeakToolsException>(() => Run(new ValgrindOptions { Program = "/bin/true", ExtraArguments = new[] { "--no-such-option=1" } }));
        Assert.Equal("ValgrindFailed", e.ErrorId);
        Assert.Contains("--no-such-option", e.Message);
        Assert.Throws<ArgumentException>(() => ValgrindRun.Start(new ValgrindOptions { Program = "/bin/true", ExtraArguments = new[] { "--xml-file=/tmp/x.xml" } }));
    }

    [Fact]
    public void Programs_resolve_like_a_shell_and_missing_ones_are_ProgramNotFound()
    {
        Assert.Equal("/bin/sh", ExecutableLocator.ResolveProgram("/bin/sh", "/"));
        Assert.Equal("/usr/bin/env", ExecutableLocator.ResolveProgram("../usr/bin/env", "/tmp"));
        Assert.StartsWith("/", ExecutableLocator.ResolveProgram("sh", "/"));
        var missing = Assert.Throws<LeakToolsException>(() => ExecutableLocator.ResolveProgram("./no-such-program", "/tmp"));
        Assert.Equal(("ProgramNotFound", FailureKind.NotFound), (missing.ErrorId, missing.Kind));
        Assert.Equal("ProgramNotFound", Assert.Throws<LeakToolsException>(() => ExecutableLocator.ResolveProgram("no-such-program-anywhere", "/")).ErrorId);
        string plain = Path.GetTempFileName(); // mode 0600
        try
        {
            Assert.Equal("ProgramNotExecutable", Assert.Throws<LeakToolsException>(() => ExecutableLocator.ResolveProgram(plain, "/")).ErrorId);
        }
        finally
        {
            File.Delete(plain);
        }
        Assert.Null(ExecutableLocator.FindOnPath("valgrind", "/nonexistent"));
    }
}
