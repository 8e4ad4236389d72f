using System.Text;
using LeakTools.Core.Monitoring;
using LeakTools.Tests.Shared;
using Xunit;

namespace LeakTools.Core.Tests.Monitoring;

/// <summary>Unit names, cron schedules, quoting, and the generated files checked by the real tools
/// (systemd-escape, systemd-analyze verify, /bin/sh).</summary>
public sealed class SchedulerFilesTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("leaktools-root-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private static readonly string[] s_names = { "leaky*", "a/b-c", ".hidden", "ünï", "x y:z_1.2", "amsHelper", "it's 100%" };

    [LinuxFact("systemd-escape")]
    public void Unit_names_are_escaped_as_systemd_escape_does()
    {
        string expected = Tools.Run("systemd-escape", s_names).Trim();
        Assert.Equal(expected, string.Join(" ", s_names.Select(MonitorNames.SystemdEscape)));
    }

    [Fact]
    public void Cron_file_names_use_only_the_characters_cron_accepts_and_stay_distinct()
    {
        var files = s_names.Concat(new[] { "a_b", "a-b", "a b" }).Select(MonitorNames.CronFile).ToList();
        Assert.All(files, f => Assert.Matches("^[A-Za-z0-9_-]+$", f));
        Assert.Equal(files.Count, files.Distinct().Count());
        Assert.Equal("leaktools-leaky_2a", MonitorNames.CronFile("leaky*"));
    }

    [Theory]
    [InlineData(60, "* * * * *")]
    [InlineData(300, "*/5 * * * *")]
    [InlineData(1800, "*/30 * * * *")]
    [InlineData(3600, "0 * * * *")]
    [InlineData(6 * 3600, "0 */6 * * *")]
    [InlineData(86400, "0 0 * * *")]
    public void Cron_schedules_keep_a_fixed_period(double seconds, string expected) =>
        Assert.Equal(expected, SchedulerFiles.CronSchedule(TimeSpan.FromSeconds(seconds)));

    [Theory]
    [InlineData(0, "InvalidInterval")]
    [InlineData(-60, "InvalidInterval")]
    [InlineData(30, "IntervalTooShort")]
    [InlineData(90, "IntervalNotSupported")]
    [InlineData(7 * 60, "IntervalNotSupported")]
    [InlineData(5 * 3600, "IntervalNotSupported")]
    public void Cron_refuses_intervals_it_cannot_keep(double seconds, string errorId) =>
        Assert.Equal(errorId, Assert.Throws<LeakToolsException>(() => SchedulerFiles.CronSchedule(TimeSpan.FromSeconds(seconds))).ErrorId);

    [Fact]
    public void Systemd_takes_any_interval_from_10_s()
    {
        SchedulerFiles.ValidateInterval(TimeSpan.FromSeconds(10), MonitorScheduler.Systemd);
        SchedulerFiles.ValidateInterval(TimeSpan.FromSeconds(90), MonitorScheduler.Systemd);
        Assert.Equal("IntervalTooShort", Assert.Throws<LeakToolsException>(() => SchedulerFiles.ValidateInterval(TimeSpan.FromSeconds(2), MonitorScheduler.Systemd)).ErrorId);
        Assert.Equal("90s", SchedulerFiles.SystemdTimeSpan(TimeSpan.FromSeconds(90)));
        Assert.Equal("12500ms", SchedulerFiles.SystemdTimeSpan(TimeSpan.FromSeconds(12.5)));
    }

    private static MonitorDefinition Definition(string name, MonitorScheduler scheduler, string root) => new()
    {
        Name = name,
        ProcessName = new[] { name, "other's" },
        Scheduler = scheduler,
        Interval = TimeSpan.FromMinutes(5),
        Window = TimeSpan.FromHours(4),
        Retention = TimeSpan.FromDays(30),
        History = Path.Combine(root, "var/lib/leaktools", MonitorNames.FileEscape(name) + ".db"),
        PrometheusTextfile = Path.Combine(root, "textfile", "it's 100% $HOME.prom"),
    };

    private static MonitorCommand Command(string script) => new(
        new[] { "/bin/sh", "-c", script },
        new[] { new KeyValuePair<string, string>("HOME", "/root"), new KeyValuePair<string, string>("PATH", SchedulerFiles.DefaultPath) },
        "root");

    [LinuxFact("systemd-analyze")]
    public void Generated_units_pass_systemd_analyze_verify_and_the_timer_names_a_service_that_exists()
    {
        var registry = new MonitorRegistry(_root);
        foreach (string name in new[] { "leaky*", "ams Helper 100%" })
        {
            var d = Definition(name, MonitorScheduler.Systemd, _root);
            var command = new MonitorCommand(new[] { "/usr/bin/env", "true", "it's 100% $HOME \"quoted\" \\ back" },
                Command("").Environment, "root");
            var (monitor, _) = registry.Register(d, command);
            string service = monitor.Files.Single(f => f.EndsWith(".service"));
            string timer = monitor.Files.Single(f => f.EndsWith(".timer") && !f.Contains("timers.target.wants"));

            var result = RunTool("systemd-analyze", "verify", service, timer);
            Assert.True(result.ExitCode == 0, $"systemd-analyze verify failed ({result.ExitCode}):\n{result.Output}");

            // verify passes even when the timer's service is missing: check it separately.
            string unitLine = File.ReadAllLines(timer).Single(l => l.StartsWith("Unit="))["Unit=".Length..];
            Assert.Equal(Path.GetFileName(service), unitLine.Replace("%%", "%"));
            Assert.True(File.Exists(Path.Combine(Path.GetDirectoryName(timer)!, unitLine.Replace("%%", "%"))));

            // enabled the way systemctl enable does it
            string wants = Path.Combine(_root, "etc/systemd/system/timers.target.wants", Path.GetFileName(timer));
            Assert.Equal("../" + Path.GetFileName(timer), new FileInfo(wants).LinkTarget);
            Assert.True(monitor.Enabled);

            // ExecStart, unquoted by systemd's rules, is the command we meant
            string execStart = File.ReadAllLines(service).Single(l => l.StartsWith("ExecStart="))["ExecStart=".Length..];
            Assert.Equal(command.Arguments, SystemdWords(execStart));
        }

        // a broken unit fails the same check, so the check can fail
        string bad = Path.Combine(_root, "etc/systemd/system/leaktools-monitor-bad.service");
        File.WriteAllText(bad, "[Service]\nType=oneshot\nExecStart=/no/such/program\n");
        Assert.NotEqual(0, RunTool("systemd-analyze", "verify", bad).ExitCode);
    }

    [Fact]
    public void The_cron_file_sets_the_environment_and_runs_the_exact_command_through_sh()
    {
        string marker = Path.Combine(_root, "ran");
        string script = $"printf '%s|%s|%s' \"$HOME\" \"$PATH\" \"it's 100%\" > '{marker}'";
        var d = Definition("leaky*", MonitorScheduler.Cron, _root);
        var (monitor, _) = new MonitorRegistry(_root).Register(d, Command(script));
        string file = Assert.Single(monitor.Files);
        Assert.Equal(Path.Combine(_root, "etc/cron.d/leaktools-leaky_2a"), file);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead, File.GetUnixFileMode(file));
        string text = File.ReadAllText(file);
        Assert.EndsWith("\n", text);
        Assert.Contains("\nSHELL=/bin/sh\n", text);
        Assert.Contains("\nHOME=/root\n", text);
        Assert.Contains($"\nPATH={SchedulerFiles.DefaultPath}\n", text);

        // The job line as cron runs it: split off time and user, unescape \% as cron does, run with
        // only the file's variables (what cron gives a job) through /bin/sh -c.
        string line = text.Split('\n').Single(l => l.StartsWith("*/5 "));
        var (schedule, user, cmd) = SchedulerFiles.SplitCronLine(line);
        Assert.Equal("*/5 * * * *", schedule);
        Assert.Equal("root", user);
        Assert.DoesNotContain(cmd.Replace("\\%", ""), "%"); // a bare % would become a newline
        var result = RunTool("env", "-i", "HOME=/root", $"PATH={SchedulerFiles.DefaultPath}", "SHELL=/bin/sh", "/bin/sh", "-c", cmd.Replace("\\%", "%"));
        Assert.True(result.ExitCode == 0, result.Output);
        Assert.Equal($"/root|{SchedulerFiles.DefaultPath}|it's 100%", File.ReadAllText(marker));

        // Get-LeakMonitor's view of it
        var listed = Assert.Single(new MonitorRegistry(_root).List());
        Assert.Equal("leaky*", listed.Name);
        Assert.Equal(new[] { "leaky*", "other's" }, listed.ProcessName);
        Assert.Equal(TimeSpan.FromMinutes(5), listed.Interval);
        Assert.Equal(TimeSpan.FromHours(4), listed.Window);
        Assert.Equal(d.PrometheusTextfile, listed.PrometheusTextfile);
        Assert.Equal(cmd, listed.Command);
        Assert.Equal(_root, listed.Root);
    }

    [Fact]
    public void The_invoke_script_quotes_every_value_for_powershell()
    {
        var d = Definition("it's ‘x’", MonitorScheduler.Cron, "/r") with { Action = MonitorAction.Snapshot, SnapshotDirectory = "/snap", MinimumGrowth = 1048576, Confidence = 0.99 };
        string s = d.InvokeScript("/opt/Leak Tools/LeakTools.psd1");
        Assert.StartsWith("Import-Module '/opt/Leak Tools/LeakTools.psd1'; Invoke-LeakMonitor -Name 'it''s ‘‘x’’','other''s' -MonitorName 'it''s ‘‘x’’'", s);
        Assert.Contains(" -Window 14400 -Retention 2592000 ", s);
        Assert.Contains(" -MinimumGrowth 1048576 -Confidence 0.99 ", s);
        Assert.Contains(" -Action Snapshot -SnapshotDirectory '/snap'", s);
        Assert.EndsWith(" | Out-Null", s);
    }

    [Fact]
    public void Unregister_removes_every_file_and_keeps_the_history_unless_asked()
    {
        var registry = new MonitorRegistry(_root);
        var d = Definition("m", MonitorScheduler.Systemd, _root);
        var (monitor, _) = registry.Register(d, Command("true"));
        Directory.CreateDirectory(Path.GetDirectoryName(d.History)!);
        File.WriteAllText(d.History, "x");
        File.WriteAllText(d.History + ".pending", "");
        Assert.Equal(3, registry.Unregister(monitor, removeHistory: false).Count);
        Assert.Empty(registry.List());
        Assert.True(File.Exists(d.History));
        var (again, _) = registry.Register(d with { Scheduler = MonitorScheduler.Cron }, Command("true"));
        Assert.Equal(3, registry.Unregister(again, removeHistory: true).Count); // the cron file, the history, its spool
        Assert.False(File.Exists(d.History));
        Assert.Empty(Directory.EnumerateFileSystemEntries(Path.Combine(_root, "etc/cron.d")));
    }

    /// <summary>Splits an ExecStart= value as systemd does (extract_first_word with UNQUOTE and
    /// CUNESCAPE, then $$ and %% unescaped): a reference for the quoting, independent of ours.</summary>
    private static List<string> SystemdWords(string value)
    {
        var words = new List<string>();
        int i = 0;
        while (i < value.Length)
        {
            while (i < value.Length && value[i] == ' ') i++;
            if (i >= value.Length) break;
            var sb = new StringBuilder();
            char? quote = null;
            for (; i < value.Length; i++)
            {
                char c = value[i];
                if (quote is null && c == ' ') break;
                if (c == '\\' && i + 1 < value.Length)
                {
                    char n = value[++i];
                    sb.Append(n switch { 'n' => '\n', 't' => '\t', _ => n });
                }
                else if (quote is null && c is '"' or '\'') quote = c;
                else if (c == quote) quote = null;
                else sb.Append(c);
            }
            words.Add(sb.ToString().Replace("$$", "$").Replace("%%", "%"));
        }
        return words;
    }

    private static (int ExitCode, string Output) RunTool(string exe, params string[] args)
    {
        var psi = new System.Diagnostics.ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args) psi.ArgumentList.Add(a);
        using var p = System.Diagnostics.Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        string output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, output + err.Result);
    }
}
