using System.Management.Automation;
using System.Management.Automation.Runspaces;
using LeakTools.Tests.Shared;
using Xunit;

namespace LeakTools.Tests;

/// <summary>Watch-Allocation end to end in a hosted runspace: parameters, errors, pipeline
/// binding, Ctrl+C.</summary>
public sealed class TracingCmdletTests : IDisposable
{
    private readonly PowerShellSession _ps = new();

    public void Dispose() => _ps.Dispose();

    private static string Server() => AllocServer.Build();

    private static Dictionary<string, object?> Vars(params (string, object?)[] pairs) => pairs.ToDictionary(p => p.Item1, p => p.Item2);

    private static string Ask(FixtureProcess f, string command) => AllocServer.Ask(f, command);

    [LinuxTheory("gcc")]
    [InlineData("Agent")]
    [InlineData("Breakpoint")]
    public void Piped_by_Id_sorted_and_exported_one_row_per_stack(string engine)
    {
        using FixtureProcess f = FixtureProcess.Start(Server());
        string csv = Path.Combine(Path.GetTempPath(), $"leaktools-watch-{Environment.ProcessId}.csv");
        var starter = Task.Run(() => StartWorkersOnceTraced(f, "start 2 1000000"));
        try
        {
            var r = _ps.Run(
                "[pscustomobject]@{ Id = $target } | Watch-Allocation -Expire 0.2 -Duration 2 -Engine $engine | Sort-Object ExpiredBytes -Descending | Select-Object -First 5 -OutVariable top | Export-Csv $csv; $top",
                Vars(("target", f.Pid), ("csv", csv), ("engine", engine))).NoErrors();
            var stacks = r.All<AllocationStack>().ToList();
            Assert.All(stacks, s => Assert.Equal(engine, s.Engine));
            Assert.NotEmpty(stacks);
            Assert.All(stacks, s => Assert.True(s.Final)); // with a command after it: only the final update per stack
            Assert.Equal(stacks.Count, stacks.Select(s => s.StackId).Distinct().Count());
            Assert.Equal(stacks.OrderByDescending(s => s.ExpiredBytes).Select(s => s.StackId), stacks.Select(s => s.StackId));
            Assert.Equal("leak_realloc", stacks[0].Function); // 3000 bytes x 16
            string[] lines = File.ReadAllLines(csv);
            Assert.Equal(stacks.Count + 1, lines.Length);
            Assert.Contains("ExpiredBytes", lines[0]);
            Assert.Contains("alloc-server.c:", lines[1]);
        }
        finally
        {
            File.Delete(csv);
        }
    }

    /// <summary>Starts the fixture's workers once an engine watches it (threads born after attach).</summary>
    private static void StartWorkersOnceTraced(FixtureProcess f, string command)
    {
        AllocServer.WaitUntilWatched(f.Pid);
        f.Send(command);
    }

    [LinuxTheory("gcc")]
    [InlineData("Agent")]
    [InlineData("Breakpoint")]
    public void Ctrl_C_detaches_and_the_target_runs_on_untraced(string engine)
    {
        using FixtureProcess f = FixtureProcess.Start(Server());
        string sum = Ask(f, "sum");
        var (runspace, ps) = PowerShellSession.CreateStoppable();
        using var _ = runspace;
        using var __ = ps;
        ps.AddCommand("Watch-Allocation").AddParameter("Id", f.Pid).AddParameter("Expire", 1).AddParameter("Engine", engine);
        var async = ps.BeginInvoke();
        StartWorkersOnceTraced(f, "start 2");
        Thread.Sleep(1500);
        ps.Stop();
        Assert.True(async.IsCompleted);
        Assert.Matches(@"TracerPid:\s+0\n", File.ReadAllText($"/proc/{f.Pid}/status"));
        Assert.StartsWith("started", f.ReadLine(TimeSpan.FromSeconds(10)));
        Assert.StartsWith("joined", Ask(f, "join"));
        Assert.Equal(sum, Ask(f, "sum"));
        if (engine == "Agent") Assert.Contains("libleaktools-agent.so", File.ReadAllText($"/proc/{f.Pid}/maps")); // loaded, never dlclosed
    }

    [LinuxFact]
    public void Bad_input_gets_clear_errors()
    {
        var missing = _ps.Run("Watch-Allocation -Id 999999 -Duration 1");
        Assert.Equal("ProcessNotFound,LeakTools.Commands.WatchAllocationCommand", Assert.Single(missing.Errors).FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.ObjectNotFound, missing.Errors[0].CategoryInfo.Category);

        var kernel = _ps.Run("Watch-Allocation -Id 2 -Duration 1");
        Assert.Equal("KernelThread,LeakTools.Commands.WatchAllocationCommand", Assert.Single(kernel.Errors).FullyQualifiedErrorId);

        foreach (string bad in new[] { "-Expire 0", "-Expire -1", "-Duration 0" })
        {
            var r = _ps.Run($"Watch-Allocation -Id $pid {bad}");
            string id = (r.Terminating as IContainsErrorRecord)?.ErrorRecord.FullyQualifiedErrorId ?? r.Errors.Single().FullyQualifiedErrorId;
            Assert.Matches("^Invalid(Expire|Duration),LeakTools.Commands.WatchAllocationCommand$", id);
        }
        var tooDeep = _ps.Run("Watch-Allocation -Id $pid -Depth 129");
        Assert.Contains("ParameterArgumentValidationError", (tooDeep.Terminating as IContainsErrorRecord)?.ErrorRecord.FullyQualifiedErrorId ?? tooDeep.Errors.Single().FullyQualifiedErrorId);
        var notADuration = _ps.Run("Watch-Allocation -Id $pid -Expire soon");
        Assert.Contains("ParameterArgumentTransformationError", (notADuration.Terminating as IContainsErrorRecord)?.ErrorRecord.FullyQualifiedErrorId ?? notADuration.Errors.Single().FullyQualifiedErrorId);

        foreach (var (bad, expected) in new[]
        {
            ("-Engine Breakpoint -SampleInterval 512KB", "SamplingNeedsAgent"),
            ("-Engine Agent -Module libc.so.6", "ModuleNeedsBreakpoint"),
        })
        {
            var r = _ps.Run($"Watch-Allocation -Id $pid -Duration 1 {bad}");
            Assert.Equal($"{expected},LeakTools.Commands.WatchAllocationCommand", (r.Terminating as IContainsErrorRecord)?.ErrorRecord.FullyQualifiedErrorId ?? r.Errors.Single().FullyQualifiedErrorId);
        }
        var badEngine = _ps.Run("Watch-Allocation -Id $pid -Engine Magic");
        Assert.Contains("ParameterArgumentValidationError", (badEngine.Terminating as IContainsErrorRecord)?.ErrorRecord.FullyQualifiedErrorId ?? badEngine.Errors.Single().FullyQualifiedErrorId);

        var noProgram = _ps.Run("Watch-Allocation -FilePath ./no-such-program-here");
        Assert.Equal("ProgramNotFound,LeakTools.Commands.WatchAllocationCommand", (noProgram.Terminating as IContainsErrorRecord)?.ErrorRecord.FullyQualifiedErrorId ?? noProgram.Errors.Single().FullyQualifiedErrorId);
    }

    [LinuxFact("gcc")]
    public void A_static_binary_without_symbols_names_the_modules_searched()
    {
        string exe = FixtureBuilder.Build("alloc-server.c", "-O2 -static -s", "lt-alloc-static");
        using FixtureProcess f = FixtureProcess.Start(exe);
        var r = _ps.Run("Watch-Allocation -Id $target -Duration 1", Vars(("target", f.Pid)));
        ErrorRecord e = Assert.Single(r.Errors);
        Assert.Equal("NoAllocatorSymbols,LeakTools.Commands.WatchAllocationCommand", e.FullyQualifiedErrorId);
        Assert.Contains("lt-alloc-static", e.Exception.Message);
        Assert.Contains("-Module", e.Exception.Message);
    }

    /// <summary>Waits until Watch-Allocation reports progress past "attaching": the engine is hooked.</summary>
    private static void WaitUntilReporting(PowerShell ps)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (!ps.Streams.Progress.ToArray().Any(p => p.StatusDescription.Contains("allocations")) && DateTime.UtcNow < deadline) Thread.Sleep(20);
        Assert.True(ps.Streams.Progress.ToArray().Any(p => p.StatusDescription.Contains("allocations")), "Watch-Allocation never reported progress");
    }

    [LinuxTheory("gcc")]
    [InlineData("Agent")]
    [InlineData("Breakpoint")]
    public void A_target_that_forks_again_and_again_gets_one_fork_warning_per_session(string engine)
    {
        using FixtureProcess f = FixtureProcess.Start(Server());
        var (runspace, ps) = PowerShellSession.CreateStoppable();
        using var _ = runspace;
        using var __ = ps;
        ps.AddCommand("Watch-Allocation").AddParameter("Id", f.Pid).AddParameter("Expire", 1).AddParameter("Engine", engine);
        var async = ps.BeginInvoke();
        WaitUntilReporting(ps);
        // Four forks, each a few agent reports apart (its tick is a tenth of -Expire), so a warning
        // per report that saw a new fork would show up as several.
        for (int i = 0; i < 4; i++)
        {
            Assert.StartsWith("forked child=", Ask(f, "fork"));
            Thread.Sleep(400);
        }
        ps.Stop();
        Assert.True(async.IsCompleted);
        var forkWarnings = ps.Streams.Warning.Select(w => w.Message).Where(m => m.Contains("children are not traced")).ToList();
        Assert.Single(forkWarnings);
        Assert.Contains($"Process {f.Pid} forked", forkWarnings[0]);
        Assert.Matches(@"TracerPid:\s+0\n", File.ReadAllText($"/proc/{f.Pid}/status"));
    }

    [LinuxFact("gcc")]
    public void WhatIf_attaches_to_nothing_and_starts_nothing()
    {
        using FixtureProcess f = FixtureProcess.Start(Server());
        string marker = Path.Combine(Path.GetTempPath(), $"leaktools-whatif-{Environment.ProcessId}-{Guid.NewGuid():n}");
        foreach (string engine in new[] { "Agent", "Breakpoint" })
        {
            var r = _ps.Run("Watch-Allocation -Id $target -Engine $engine -Duration 30 -WhatIf", Vars(("target", f.Pid), ("engine", engine))).NoErrors();
            Assert.Empty(r.Output);
            // Nothing was done to the process: no tracer, no agent library mapped; it answers as before.
            Assert.Matches(@"TracerPid:\s+0\n", File.ReadAllText($"/proc/{f.Pid}/status"));
            Assert.DoesNotContain("libleaktools-agent.so", File.ReadAllText($"/proc/{f.Pid}/maps"));
            Assert.StartsWith("sum ", Ask(f, "sum"));
        }
        // Launch mode: the program is not started.
        var launch = _ps.Run("Watch-Allocation -FilePath /usr/bin/touch -ArgumentList $marker -Duration 30 -WhatIf", Vars(("marker", marker))).NoErrors();
        Assert.Empty(launch.Output);
        Assert.False(File.Exists(marker));
        // And -WhatIf is what it says: the command supports it with ConfirmImpact Medium.
        var meta = _ps.Run("$c = Get-Command Watch-Allocation; [System.Management.Automation.CommandMetadata]::new($c).ConfirmImpact").Single<System.Management.Automation.ConfirmImpact>();
        Assert.Equal(System.Management.Automation.ConfirmImpact.Medium, meta);
    }
}
