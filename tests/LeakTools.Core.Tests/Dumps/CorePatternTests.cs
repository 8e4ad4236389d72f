using LeakTools.Core.Dumps;
using Xunit;

namespace LeakTools.Core.Tests.Dumps;

public class CorePatternTests
{
    private static readonly CorePatternContext Ctx = new()
    {
        Pid = 4242, GlobalPid = 14242, Tid = 4243, Uid = 1000, Gid = 100, Signal = 6, Comm = "amsHelper",
        ExecutablePath = "/sbin/amsHelper", Hostname = "db01", CoreLimit = null, WorkingDirectory = "/var/lib/ams", UsesPid = false,
    };

    [Theory]
    [InlineData("core", "/var/lib/ams/core")]
    [InlineData("/var/crash/core.%e.%p", "/var/crash/core.amsHelper.4242")]
    [InlineData("/var/crash/%P-%i-%I-%u-%g-%s-%h-%%", "/var/crash/14242-4243-4243-1000-100-6-db01-%")]
    [InlineData("/cores/%E.%c", "/cores/!sbin!amsHelper.18446744073709551615")]
    [InlineData("cores/%f-%t", "/var/lib/ams/cores/amsHelper-1700000000")]
    [InlineData("/x/%q%e", "/x/amsHelper")] // unknown specifiers are dropped, as the kernel does
    public void Expands_like_the_kernel(string pattern, string expected) =>
        Assert.Equal(expected, CorePattern.Expand(pattern, Ctx, time: 1700000000));

    [Fact]
    public void Core_uses_pid_appends_the_pid_unless_the_pattern_has_one()
    {
        var c = new CorePatternContext { Pid = 77, Comm = "x", WorkingDirectory = "/tmp", UsesPid = true };
        Assert.Equal("/tmp/core.77", CorePattern.Expand("core", c));
        Assert.Equal("/tmp/core-77", CorePattern.Expand("core-%p", c));
        var limited = new CorePatternContext { Pid = 77, Comm = "x", CoreLimit = 1048576, WorkingDirectory = "/" };
        Assert.Equal("/core-1048576", CorePattern.Expand("core-%c", limited));
    }

    [Fact]
    public void Regex_matches_any_second_for_percent_t()
    {
        var re = CorePattern.ToRegex("/var/crash/core.%e.%p.%t", Ctx);
        Assert.Matches(re, "/var/crash/core.amsHelper.4242.1716543210");
        Assert.DoesNotMatch(re, "/var/crash/core.amsHelper.4243.1716543210");
        Assert.DoesNotMatch(re, "/var/crash/core.amsHelperX4242.1716543210");
    }

    [Theory]
    [InlineData("core", CoreHandler.File)]
    [InlineData("/var/crash/core.%e.%p", CoreHandler.File)]
    [InlineData("|/usr/libexec/abrt-hook-ccpp %s %c %p %u %g %t e %P %I %h", CoreHandler.Abrt)]            // RHEL 7
    [InlineData("|/lib/systemd/systemd-coredump %P %u %g %s %t 9223372036854775808 %h", CoreHandler.SystemdCoredump)] // Debian 12
    [InlineData("|/usr/lib/systemd/systemd-coredump %P %u %g %s %t %c %h %d", CoreHandler.SystemdCoredump)]           // RHEL 9
    [InlineData("|/usr/share/apport/apport -p%p -s%s -c%c -d%d -P%P -u%u -g%g -- %E", CoreHandler.OtherPipe)]
    public void Classifies_the_handler(string pattern, CoreHandler handler) => Assert.Equal(handler, CorePattern.Classify(pattern));
}
