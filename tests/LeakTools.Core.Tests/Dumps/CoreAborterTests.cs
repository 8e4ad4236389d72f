using LeakTools.Core.Dumps;
using LeakTools.Core.ProcFs;
using LeakTools.Tests.Shared;
using Xunit;

namespace LeakTools.Core.Tests.Dumps;

/// <summary>Abort's locators for pipe handlers, on given core_pattern strings and temporary
/// folders (the machine's core_pattern is never changed): the fixture really gets SIGABRT, and a
/// stand-in for abrt or systemd-coredump lays the dump out the way they do once it is gone. The
/// fixture runs with a hard core limit of 0, so the kernel itself writes nothing.</summary>
public sealed class CoreAborterTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("leaktools-abort-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private static FixtureProcess Start() =>
        FixtureProcess.StartWith(FixtureBuilder.Build("core-threads.c", "-O0 -g", "lt-core-threads"), new[] { "prlimit", "--core=0:0" }, "2");

    /// <summary>Runs <paramref name="lay"/> once the process is gone, as the handler would.</summary>
    private static Task After(int pid, Action lay) => Task.Run(() =>
    {
        for (int i = 0; i < 500; i++)
        {
            if (!ProcFields.IsAlive(ProcRoot.Default, pid)) break;
            Thread.Sleep(10);
        }
        lay();
    });

    [LinuxFact("gcc", "prlimit")]
    public void Finds_the_abrt_problem_directory_once_abrt_renamed_it_into_place()
    {
        using FixtureProcess f = Start();
        string spool = Path.Combine(_root, "abrt");
        Directory.CreateDirectory(spool);
        byte[] core = SyntheticCore.Build(f.Pid, "lt-core-threads", "lt-core-threads 2", 6);
        Task abrt = After(f.Pid, () =>
        {
            string dir = Path.Combine(spool, $"ccpp-2026-01-01-10:00:00.123456-{f.Pid}");
            Directory.CreateDirectory(dir + ".new");
            foreach (var (k, v) in new[] { ("type", "CCpp"), ("pid", f.Pid.ToString()), ("executable", "/opt/lt-core-threads"), ("reason", "lt-core-threads killed by SIGABRT"),
                         ("time", DateTimeOffset.UtcNow.ToUnixTimeSeconds().ToString()), ("uid", "0") })
                File.WriteAllText(Path.Combine(dir + ".new", k), v);
            File.WriteAllBytes(Path.Combine(dir + ".new", "coredump"), core);
            Directory.Move(dir + ".new", dir);
        });
        var aborter = new CoreAborter { CorePatternOverride = "|/usr/libexec/abrt-hook-ccpp %s %c %p %u %g %t e %P %I %h", AbrtSpool = spool };
        CoreDump d = aborter.Abort(new ProcessReader().ReadIdentity(f.Pid), TimeSpan.FromSeconds(20));
        abrt.Wait();
        Assert.Equal(CoreDumpSource.Abrt, d.Source);
        Assert.Equal(f.Pid, d.Id);
        Assert.Equal(6, d.Signal);
        Assert.EndsWith("/coredump", d.Path);
    }

    [LinuxFact("gcc", "prlimit")]
    public void Finds_the_systemd_coredump_file_once_it_is_linked_into_place()
    {
        using FixtureProcess f = Start();
        string dir = Path.Combine(_root, "coredump");
        Directory.CreateDirectory(dir);
        Task systemd = After(f.Pid, () =>
        {
            long usec = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1000;
            string name = $"core.lt-core-threads.0.0123456789abcdef0123456789abcdef.{f.Pid}.{usec}";
            File.WriteAllBytes(Path.Combine(dir, ".#" + name), SyntheticCore.Build(f.Pid, "lt-core-threads", "x", 6));
            File.Move(Path.Combine(dir, ".#" + name), Path.Combine(dir, name));
        });
        var aborter = new CoreAborter { CorePatternOverride = "|/lib/systemd/systemd-coredump %P %u %g %s %t 9223372036854775808 %h", SystemdCoredumpPath = dir };
        CoreDump d = aborter.Abort(new ProcessReader().ReadIdentity(f.Pid), TimeSpan.FromSeconds(20));
        systemd.Wait();
        Assert.Equal(CoreDumpSource.SystemdCoredump, d.Source);
        Assert.Equal(f.Pid, d.Id);
    }

    [LinuxFact("gcc", "prlimit")]
    public void Says_what_to_check_when_the_handler_stored_nothing()
    {
        using FixtureProcess f = Start();
        var aborter = new CoreAborter { CorePatternOverride = "|/usr/libexec/abrt-hook-ccpp %s %c %p %u %g %t e %P %I %h", AbrtSpool = Path.Combine(_root, "empty") };
        var ex = Assert.Throws<LeakToolsException>(() => aborter.Abort(new ProcessReader().ReadIdentity(f.Pid), TimeSpan.FromSeconds(2)));
        Assert.Equal("CoreDumpNotFound", ex.ErrorId);
        Assert.Contains("ProcessUnpackaged", ex.Message);
    }

    [LinuxFact("gcc", "prlimit")]
    public void Refuses_an_unknown_pipe_handler_and_leaves_the_process_running()
    {
        using FixtureProcess f = Start();
        var aborter = new CoreAborter { CorePatternOverride = "|/usr/share/apport/apport -p%p -s%s -c%c -d%d -P%P -u%u -g%g -- %E" };
        var ex = Assert.Throws<LeakToolsException>(() => aborter.Abort(new ProcessReader().ReadIdentity(f.Pid), TimeSpan.FromSeconds(5)));
        Assert.Equal("CoreHandlerUnknown", ex.ErrorId);
        Assert.Contains("apport", ex.Message);
        Assert.True(Directory.Exists($"/proc/{f.Pid}"));
    }

    [LinuxFact("gcc", "prlimit")]
    public void A_plain_pattern_with_a_hard_limit_of_zero_is_blocked_before_anything_is_sent()
    {
        using FixtureProcess f = Start();
        var aborter = new CoreAborter { CorePatternOverride = Path.Combine(_root, "core.%e.%p") };
        var ex = Assert.Throws<LeakToolsException>(() => aborter.Abort(new ProcessReader().ReadIdentity(f.Pid), TimeSpan.FromSeconds(5)));
        Assert.Equal("CoreLimitBlocked", ex.ErrorId);
        Assert.True(Directory.Exists($"/proc/{f.Pid}"));
        f.Send("sum");
        Assert.StartsWith("SUM", f.ReadLine(TimeSpan.FromSeconds(5)));
    }
}
