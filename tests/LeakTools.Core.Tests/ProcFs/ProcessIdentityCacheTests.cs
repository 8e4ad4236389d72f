using LeakTools.Core.ProcFs;
using LeakTools.Tests.Shared;
using Xunit;

namespace LeakTools.Core.Tests.ProcFs;

public class ProcessIdentityCacheTests
{
    [LinuxFact("gcc")]
    public void Known_pids_are_not_read_again_until_they_age_new_and_reused_ones_are()
    {
        using var fx = FixtureProcess.Start(FixtureBuilder.Build("memory-pattern.c"), "flat", "64");
        var cache = new ProcessIdentityCache(new ProcessReader(), TimeSpan.FromHours(1));
        Assert.Equal("memory-pattern", cache.Read(fx.Pid).Name);
        Assert.Equal("memory-pattern", cache.Read(fx.Pid).Name);
        Assert.Equal(1, cache.Reads);

        cache.Retain(new[] { Environment.ProcessId }); // the fixture's pid left the listing: forget it
        cache.Read(fx.Pid);
        Assert.Equal(2, cache.Reads);

        var fresh = new ProcessIdentityCache(new ProcessReader(), TimeSpan.Zero); // always stale
        fresh.Read(fx.Pid);
        fresh.Read(fx.Pid);
        Assert.Equal(2, fresh.Reads);
    }

    [Fact]
    public void A_pid_that_is_gone_throws_and_is_not_cached()
    {
        var cache = new ProcessIdentityCache(new ProcessReader(), TimeSpan.FromHours(1));
        Assert.Throws<ProcessNotFoundException>(() => cache.Read(int.MaxValue - 1));
        Assert.Throws<ProcessNotFoundException>(() => cache.Read(int.MaxValue - 1));
        Assert.Equal(2, cache.Reads);
    }
}
