using System.Management.Automation;
using System.Management.Automation.Runspaces;
using LeakTools.Tests.Shared;
using Xunit;

namespace LeakTools.Tests;

/// <summary>Invoke-Valgrind and Import-ValgrindLog hosted in-process, against the real valgrind.</summary>
public sealed class ValgrindCmdletTests : IClassFixture<ValgrindCmdletTests.Session>, IDisposable
{
    public sealed class Session : IDisposable
    {
        public PowerShellSession Ps { get; } = new();
        public void Dispose() => Ps.Dispose();
    }

    private readonly PowerShellSession _ps;
    private readonly string _tempDir = Directory.CreateTempSubdirectory("leaktools-test").FullName;

    public ValgrindCmdletTests(Session session) => _ps = session.Ps;

    public void Dispose() => Directory.Delete(_tempDir, recursive: true);

    private static Dictionary<string, object?> Vars(params (string, object?)[] pairs) => pairs.ToDictionary(p => p.Item1, p => p.Item2);

    private static string Sample(string name) => Path.Combine(RepoPaths.Samples, "valgrind", name);


    [LinuxFact("gcc", "valgrind")]
    public void Memwatch_example_gives_the_512_byte_leak_at_its_malloc_line_and_the_invalid_free_at_the_second_free()
    {
        string exe = FixtureBuilder.Build("memwatch-memory.c", "-O0 -g");
        var r = _ps.Run("Invoke-Valgrind $exe", Vars(("exe", exe))).NoErrors();
        var records = r.Output.Where(o => o.BaseObject is LeakRecord).Select(o => (LeakRecord)o.BaseObject).ToList();
        Assert.IsType<LeakSummary>(r.Output[^1].BaseObject);

        var leak = Assert.Single(records, x => x.Kind == LeakKind.DefinitelyLost);
        Assert.Equal((512L, 1L), (leak.Bytes!.Value, leak.Blocks!.Value));
        Assert.Equal(("main", 11), (leak.Function, leak.Line!.Value));
        Assert.EndsWith("/memwatch-memory.c", leak.File);
        var free = Assert.Single(records, x => x.Kind == LeakKind.InvalidFree);
        Assert.Equal(15, free.Line);
        Assert.Equal(2, records.Count);

        var summary = (LeakSummary)r.Output[^1].BaseObject;
        Assert.Equal((512L, 2L, 1024L, 0), (summary.DefinitelyLost!.Value, summary.Allocs!.Value, summary.BytesAllocated!.Value, summary.ExitCode!.Value));
        Assert.Equal(exe, summary.Command);

        // the default view reads like valgrind
        string text = (string)_ps.Run("Invoke-Valgrind $exe | Out-String -Width 200", Vars(("exe", exe))).NoErrors().Output[0].BaseObject;
        Assert.Contains("512 bytes in 1 blocks are definitely lost in loss record 1 of 1", text);
        Assert.Matches(@"   by 0x[0-9A-F]+: main \(memwatch-memory\.c:11\)", text);
        Assert.Matches(@"   by 0x[0-9A-F]+: main \(memwatch-memory\.c:15\)", text);
        Assert.Contains(" Address 0x", text);
        Assert.Contains("   definitely lost: 512 bytes in 1 blocks", text);
        Assert.Contains("ERROR SUMMARY: 2 errors from 2 contexts (suppressed: 0 from 0)", text);
        Assert.Contains("  total heap usage: 2 allocs, 1 frees, 1,024 bytes allocated", text);
    }

    [LinuxFact("gcc", "valgrind")]
    public void Duration_in_seconds_stops_the_daemon_its_output_passes_through_and_LogPath_keeps_the_xml()
    {
        string exe = FixtureBuilder.Build("valgrind-daemon.c");
        string xml = Path.Combine(_tempDir, "daemon.xml");
        var r = _ps.Run("Invoke-Valgrind $exe -Duration 1.5 -LogPath $xml -Verbose -InformationVariable info; $info | ForEach-Object { '{0}|{1}' -f ($_.Tags -join ','), $_.MessageData }",
            Vars(("exe", exe), ("xml", xml))).NoErrors();
        // the stdin watcher thread's TLS (calloc in ld.so) is possibly lost while the thread runs
        var leak = Assert.Single(r.Output.Select(o => o.BaseObject).OfType<LeakRecord>(), x => x.Kind == LeakKind.DefinitelyLost);
        Assert.Equal(("remember_request", FixtureSource.LineOf("valgrind-daemon.c", "leaked every tick")), (leak.Function, leak.Line!.Value));
        Assert.Equal(xml, leak.Path);
        var lines = r.Output.Select(o => o.BaseObject).OfType<string>().ToList();
        Assert.Contains(lines, l => l.StartsWith("Stdout,Program|READY pid="));
        Assert.Contains("Stderr,Program|daemon: serving requests", lines);
        Assert.Contains(r.Verbose, v => v.Contains("SIGINT") && v.Contains("-Duration 00:00:01.5"));
        Assert.Contains(r.Verbose, v => v.StartsWith("Running: ") && v.Contains("--xml=yes"));

        // the kept XML reads back to the same record
        var again = _ps.Run("Import-ValgrindLog $xml", Vars(("xml", xml))).NoErrors();
        var reread = Assert.Single(again.Output.Select(o => o.BaseObject).OfType<LeakRecord>(), x => x.Kind == LeakKind.DefinitelyLost);
        Assert.Equal((leak.Bytes, leak.Blocks, leak.Line), (reread.Bytes, reread.Blocks, reread.Line));
    }

    [LinuxFact("gcc", "valgrind")]
    public void Leak_kinds_shown_follow_ShowLeakKinds_ShowReachable_and_LeakCheck()
    {
        string exe = FixtureBuilder.Build("valgrind-threads.c");
        LeakKind[] Kinds(string args)
        {
            var r = _ps.Run($"Invoke-Valgrind $exe {args}", Vars(("exe", exe))).NoErrors();
            return r.Output.Select(o => o.BaseObject).OfType<LeakRecord>().Select(x => x.Kind).Where(k => k <= LeakKind.StillReachable).OrderBy(k => k).ToArray();
        }
        Assert.Equal(new[] { LeakKind.DefinitelyLost, LeakKind.DefinitelyLost, LeakKind.PossiblyLost }, Kinds(""));
        Assert.Equal(new[] { LeakKind.DefinitelyLost, LeakKind.DefinitelyLost, LeakKind.IndirectlyLost, LeakKind.PossiblyLost, LeakKind.StillReachable }, Kinds("-ShowReachable"));
        Assert.Equal(new[] { LeakKind.IndirectlyLost }, Kinds("-ShowLeakKinds Indirect"));

        var summaryOnly = _ps.Run("Invoke-Valgrind $exe -LeakCheck Summary", Vars(("exe", exe))).NoErrors().Output.Select(o => o.BaseObject).ToList();
        Assert.DoesNotContain(summaryOnly.OfType<LeakRecord>(), x => x.Kind <= LeakKind.StillReachable);
        Assert.True(3 == summaryOnly.OfType<LeakRecord>().Count(), string.Join("\n", summaryOnly.OfType<LeakRecord>())); // the three memory errors stay
        var s = Assert.Single(summaryOnly.OfType<LeakSummary>());
        Assert.Equal((116L, 64L, 48L, 32L, 0L), (s.DefinitelyLost!.Value, s.IndirectlyLost!.Value, s.PossiblyLost!.Value, s.StillReachable!.Value, s.Suppressed!.Value));
        Assert.Equal((260L, 5L), (s.InUseBytes!.Value, s.InUseBlocks!.Value));

        var none = _ps.Run("Invoke-Valgrind $exe -LeakCheck No | Select-Object -Last 1", Vars(("exe", exe))).NoErrors().Single<LeakSummary>();
        Assert.Null(none.DefinitelyLost);
        Assert.Equal(3L, none.Errors);
    }

    [LinuxFact("valgrind")]
    public void A_program_that_exits_before_the_duration_is_reported_with_a_warning()
    {
        var r = _ps.Run("Invoke-Valgrind /bin/sh -ArgumentList '-c', 'exit 4' -Duration 60").NoErrors();
        var s = r.Single<LeakSummary>();
        Assert.Equal(4, s.ExitCode);
        Assert.Contains(r.Warnings, w => w.Contains("exited on its own") && w.Contains("exit code 4"));
    }

    [LinuxFact("valgrind")]
    public void Bad_arguments_are_terminating_errors_with_stable_ids()
    {
        void Expect(string script, string id, ErrorCategory category)
        {
            var r = _ps.Run(script, Vars(("dir", _tempDir)));
            // a cmdlet's terminating error ends its statement; the script goes on with it in $Error
            var e = r.Terminating is IContainsErrorRecord t ? t.ErrorRecord : Assert.Single(r.Errors);
            Assert.Empty(r.Output);
            Assert.Equal($"{id},LeakTools.Commands.InvokeValgrindCommand", e.FullyQualifiedErrorId);
            Assert.Equal(category, e.CategoryInfo.Category);
        }
        Expect("Invoke-Valgrind ./no-such-program", "ProgramNotFound", ErrorCategory.ObjectNotFound);
        Expect("Invoke-Valgrind no-such-program-on-path", "ProgramNotFound", ErrorCategory.ObjectNotFound);
        Expect("Invoke-Valgrind /bin/true -SuppressionPath (Join-Path $dir none.supp)", "PathNotFound", ErrorCategory.ObjectNotFound);
        Expect("Invoke-Valgrind /bin/true -LogPath (Join-Path $dir no/such/dir.xml)", "PathNotFound", ErrorCategory.ObjectNotFound);
        Expect("Invoke-Valgrind /bin/true -ValgrindArgument '--log-file=x.log'", "ValgrindOptionReserved", ErrorCategory.InvalidArgument);
        Expect("Invoke-Valgrind /bin/true -Duration 0", "InvalidDuration", ErrorCategory.InvalidArgument);
        var notADuration = _ps.Run("Invoke-Valgrind /bin/true -Duration soon");
        Assert.Contains("ParameterArgumentTransformationError", (notADuration.Terminating as IContainsErrorRecord)?.ErrorRecord.FullyQualifiedErrorId ?? notADuration.Errors.Single().FullyQualifiedErrorId);
    }

    [LinuxFact("gcc", "valgrind")]
    public void Stopping_the_command_stops_the_program_and_keeps_the_report()
    {
        string exe = FixtureBuilder.Build("valgrind-daemon.c");
        string xml = Path.Combine(_tempDir, "stopped.xml");
        var (runspace, ps) = PowerShellSession.CreateStoppable();
        using var _ = runspace;
        using var __ = ps;
        ps.AddCommand("Invoke-Valgrind").AddParameter("FilePath", exe).AddParameter("LogPath", xml);
        var async = ps.BeginInvoke();
        Thread.Sleep(2000);
        var stopWatch = System.Diagnostics.Stopwatch.StartNew();
        ps.Stop();
        Assert.True(stopWatch.Elapsed < TimeSpan.FromSeconds(30));
        Assert.True(async.IsCompleted);

        var r = _ps.Run("Import-ValgrindLog $xml", Vars(("xml", xml))).NoErrors();
        var s = (LeakSummary)r.Output[^1].BaseObject;
        Assert.True(s.Complete);
        Assert.Contains(r.Output.Select(o => o.BaseObject).OfType<LeakRecord>(), x => x.Function == "remember_request");
        Assert.False(Directory.Exists($"/proc/{s.ProcessId}"), $"valgrind (pid {s.ProcessId}) still runs");
    }

    [LinuxFact]
    public void Import_reads_paths_wildcards_and_the_pipeline_and_goes_on_after_a_bad_file()
    {
        var r = _ps.Run("Import-ValgrindLog $a, (Join-Path $dir missing.xml), $meminfo, $b",
            Vars(("a", Sample("memwatch.xml")), ("b", Sample("threads.txt")), ("dir", _tempDir), ("meminfo", Path.Combine(RepoPaths.Samples, "proc", "modern", "meminfo"))));
        Assert.Equal(2, r.Output.Count(o => o.BaseObject is LeakSummary));
        Assert.Equal(2 + 8, r.Output.Count(o => o.BaseObject is LeakRecord));
        Assert.Equal(new[] { "PathNotFound,LeakTools.Commands.ImportValgrindLogCommand", "NotValgrindReport,LeakTools.Commands.ImportValgrindLogCommand" },
            r.Errors.Select(e => e.FullyQualifiedErrorId));
        Assert.Equal(ErrorCategory.InvalidData, r.Errors[1].CategoryInfo.Category);
        Assert.EndsWith("meminfo", (string)r.Errors[1].TargetObject);

        var wild = _ps.Run("Import-ValgrindLog (Join-Path $dir 'memwatch.*') | Where-Object Kind -eq DefinitelyLost", Vars(("dir", Path.Combine(RepoPaths.Samples, "valgrind")))).NoErrors();
        Assert.Equal(2, wild.Output.Count); // memwatch.txt and memwatch.xml
        var piped = _ps.Run("Get-ChildItem $dir -Filter 'threads*.xml' | Import-ValgrindLog | Where-Object { $_ -is [LeakTools.LeakSummary] }", Vars(("dir", Path.Combine(RepoPaths.Samples, "valgrind"))));
        Assert.Equal(3, piped.Output.Count); // threads, threads-suppressed, threads-truncated
        Assert.Contains(piped.Warnings, w => w.Contains("ends early"));
    }
}
