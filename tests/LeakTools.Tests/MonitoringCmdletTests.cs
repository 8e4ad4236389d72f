using System.Management.Automation;
using LeakTools.Tests.Shared;
using Xunit;

namespace LeakTools.Tests;

/// <summary>The monitoring cmdlets hosted in-process: pipeline binding between them, -WhatIf,
/// error ids, and what happens when the host is not a pwsh that a scheduler could start.</summary>
public sealed class MonitoringCmdletTests : IClassFixture<MonitoringCmdletTests.Session>, IDisposable
{
    public sealed class Session : IDisposable
    {
        public PowerShellSession Ps { get; } = new();
        public void Dispose() => Ps.Dispose();
    }

    private readonly PowerShellSession _ps;
    private readonly string _dir = Directory.CreateTempSubdirectory("leaktools-monitoring-").FullName;

    public MonitoringCmdletTests(Session session) => _ps = session.Ps;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private Dictionary<string, object?> Vars(params (string, object?)[] pairs) => pairs.ToDictionary(p => p.Item1, p => p.Item2);

    [LinuxFact("gcc")]
    public void Samples_pipe_from_Get_Process_through_Watch_into_Measure()
    {
        using var fx = FixtureProcess.Start(FixtureBuilder.Build("memory-pattern.c"), "grow", "4096");
        var r = _ps.Run("Get-Process -Id $target | Watch-ProcessMemory -Interval 0.25 -Count 8 | Measure-MemoryTrend -Property Uss", Vars(("target", fx.Pid))).NoErrors();
        var trend = r.Single<MemoryTrend>();
        Assert.Equal(fx.Pid, trend.Id);
        Assert.Equal("Uss", trend.Property);
        Assert.Equal(8, trend.Samples);
        Assert.Equal(TrendVerdict.Growing, trend.Verdict);
        Assert.InRange(trend.Span.TotalSeconds, 1.7, 2.5);
    }

    [LinuxFact("gcc")]
    public void Get_LeakMonitor_pipes_its_history_into_Get_MemoryHistory()
    {
        using var fx = FixtureProcess.Start(FixtureBuilder.Build("memory-pattern.c"), "flat", "1024");
        string root = Path.Combine(_dir, "root");
        string pwsh = Path.Combine(_dir, "pwsh");
        File.WriteAllText(pwsh, "#!/bin/sh\n");
        var r = _ps.Run(
            "Register-LeakMonitor memory-pattern -Interval 60 -Scheduler Cron -Root $root -PwshPath $pwsh | Out-Null; " +
            "$h = (Get-LeakMonitor -Root $root).History; Invoke-LeakMonitor -Id $target -MonitorName memory-pattern -History $h -NoSyslog | Out-Null; " +
            "Get-LeakMonitor -Root $root | Get-MemoryHistory",
            Vars(("root", root), ("pwsh", pwsh), ("target", fx.Pid))).NoErrors();
        var sample = r.Single<ProcessMemory>();
        Assert.Equal(fx.Pid, sample.Id);
        string cron = File.ReadAllText(Path.Combine(root, "etc/cron.d/leaktools-memory-pattern"));
        Assert.Contains($" {pwsh} -NoProfile -NonInteractive -Command ", cron);
    }

    [Fact]
    public void WhatIf_registers_nothing()
    {
        string root = Path.Combine(_dir, "whatif");
        _ps.Run("Register-LeakMonitor x -Interval 60 -Scheduler Cron -Root $root -PwshPath /bin/sh -WhatIf", Vars(("root", root))).NoErrors();
        Assert.False(Directory.Exists(root));
    }

    [Fact]
    public void A_host_that_is_not_pwsh_needs_PwshPath()
    {
        // This test host is dotnet testhost, not pwsh: there is no command line a scheduler could run.
        string root = Path.Combine(_dir, "r");
        var r = _ps.Run("Register-LeakMonitor x -Interval 60 -Scheduler Cron -Root $root", Vars(("root", root)));
        var error = Assert.Single(r.Errors); // statement-terminating: ThrowTerminatingError
        Assert.Equal("PwshNotFound,LeakTools.Commands.RegisterLeakMonitorCommand", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.InvalidArgument, error.CategoryInfo.Category);
        Assert.Contains("-PwshPath", error.Exception.Message);
        Assert.False(Directory.Exists(root));
    }

    [Fact]
    public void Measure_MemoryTrend_judges_deserialized_samples()
    {
        string xml = Path.Combine(_dir, "s.xml");
        var r = _ps.Run(
            "$t0 = Get-Date; 0..9 | ForEach-Object { [LeakTools.ProcessMemory]@{ Id = 5; Name = 'd'; Pss = 1MB * $_; Timestamp = $t0.AddSeconds($_) } } | Export-Clixml $xml; " +
            "Import-Clixml $xml | Measure-MemoryTrend", Vars(("xml", xml))).NoErrors();
        var t = r.Single<MemoryTrend>();
        Assert.Equal(TrendVerdict.Growing, t.Verdict);
        Assert.Equal(3600L << 20, t.GrowthPerHour);
    }
}
