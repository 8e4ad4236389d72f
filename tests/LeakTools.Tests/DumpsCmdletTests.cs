using System.Management.Automation;
using LeakTools.Tests.Shared;
using Xunit;

namespace LeakTools.Tests;

/// <summary>Invoke-CoreCapture and Get-CoreDump hosted in-process: the fixture is a child of this
/// very process (System.Diagnostics.Process), the case the helper host exists for.</summary>
public sealed class DumpsCmdletTests : IDisposable
{
    private readonly PowerShellSession _ps = new();
    private readonly string _dir = Directory.CreateTempSubdirectory("leaktools-dumps-cmdlet").FullName;

    public void Dispose()
    {
        _ps.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private static FixtureProcess Start() => FixtureProcess.Start(FixtureBuilder.Build("core-threads.c", "-O0 -g", "lt-core-threads"), "8");

    [LinuxFact("gcc")]
    public void Pipes_by_property_Id_and_the_listing_finds_the_snapshot()
    {
        using FixtureProcess f = Start();
        var r = _ps.Run("Get-ProcessPss -Id $pid1 | Invoke-CoreCapture -Destination $dir; Get-CoreDump -Path $dir | Where-Object Name -eq lt-core-threads | Sort-Object Time",
            new Dictionary<string, object?> { ["pid1"] = f.Pid, ["dir"] = _dir }).NoErrors();
        Assert.True(2 == r.Output.Count, string.Join("\n", r.Verbose.Concat(r.Warnings)));
        var made = (CoreDump)r.Output[0].BaseObject;
        var listed = (CoreDump)r.Output[1].BaseObject;
        Assert.Equal(made.Path, listed.Path);
        Assert.Equal(f.Pid, listed.Id);
        Assert.Equal(CoreDumpSource.Snapshot, listed.Source);
        Assert.Equal(made.FreezeTime!.Value.Ticks / 10, listed.FreezeTime!.Value.Ticks / 10);
        Assert.Matches(@"TracerPid:\s+0\n", File.ReadAllText($"/proc/{f.Pid}/status"));
    }

    [LinuxFact("gcc")]
    public void Errors_are_per_target_with_stable_ids()
    {
        using FixtureProcess f = Start();
        var r = _ps.Run("Invoke-CoreCapture -Id 999999, $pid1 -Destination $dir", new Dictionary<string, object?> { ["pid1"] = f.Pid, ["dir"] = _dir });
        Assert.Equal(f.Pid, r.Single<CoreDump>().Id);
        ErrorRecord e = Assert.Single(r.Errors);
        Assert.Equal("ProcessNotFound,LeakTools.Commands.InvokeCoreCaptureCommand", e.FullyQualifiedErrorId);
        Assert.Equal(999999, e.TargetObject);

        var whatIf = _ps.Run("Invoke-CoreCapture -Id $pid1 -Method Abort -WhatIf", new Dictionary<string, object?> { ["pid1"] = f.Pid }).NoErrors();
        Assert.Empty(whatIf.Output);
        Assert.True(Directory.Exists($"/proc/{f.Pid}"));
    }
}
