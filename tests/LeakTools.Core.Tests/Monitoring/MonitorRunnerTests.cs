using System.Net.Sockets;
using System.Text;
using LeakTools.Core.Monitoring;
using LeakTools.Tests.Shared;
using Xunit;

namespace LeakTools.Core.Tests.Monitoring;

/// <summary>Monitor runs over a real SQLite history with a controlled clock: growth episodes (one
/// syslog warning and one snapshot per episode, reminders, ends), "not running" records, errors
/// and the Prometheus textfile.</summary>
public sealed class MonitorRunnerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("leaktools-runner-").FullName;
    private DateTime _now = new(2026, 3, 1, 12, 0, 0, DateTimeKind.Local);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private sealed class RecordingSyslog : ISyslog
    {
        public List<(SyslogLevel Level, string Message)> Messages { get; } = new();
        public bool Fail { get; set; }
        public void Write(SyslogLevel level, string message)
        {
            if (Fail) throw new LeakToolsException(FailureKind.NotSupported, "SyslogFailed", "Writing to syslog failed: no /dev/log.");
            Messages.Add((level, message));
        }
    }

    /// <summary>Stands in for Invoke-CoreCapture (issue 5), recording what it is asked.</summary>
    private sealed class RecordingSnapshots : ISnapshotTaker
    {
        public List<(int Pid, string Name, string? Directory)> Taken { get; } = new();
        public bool Fail { get; set; }
        public string Take(int pid, string name, string? directory)
        {
            Taken.Add((pid, name, directory));
            if (Fail) throw new LeakToolsException(FailureKind.AccessDenied, "SnapshotFailed", "ptrace: Operation not permitted");
            return Path.Combine(directory ?? "/tmp", $"core.{name}.{pid}.{Taken.Count}");
        }
    }

    private MonitorSettings Settings(string history = "h.db", MonitorAction action = MonitorAction.Snapshot, string? textfile = null) => new()
    {
        Monitor = "leaky",
        ProcessNames = new[] { "leaky*" },
        History = Path.Combine(_dir, history),
        Window = TimeSpan.FromMinutes(10),
        Action = action,
        SnapshotDirectory = Path.Combine(_dir, "snapshots"),
        PrometheusTextfile = textfile,
    };

    private static ProcessMemory Sample(int pid, string name, DateTime time, long pss) => HistoryStoreTests.Sample(pid, name, time, pss);

    /// <summary>Runs the monitor once a minute for <paramref name="minutes"/>, each run a fresh
    /// runner as cron would start it; pss(minute) gives each process's memory.</summary>
    private List<MonitorRunResult> RunMinutes(int minutes, MonitorSettings settings, RecordingSyslog syslog, ISnapshotTaker snapshots, params (int Pid, string Name, Func<int, long?> Pss)[] processes)
    {
        var results = new List<MonitorRunResult>();
        for (int i = 0; i < minutes; i++)
        {
            _now = _now.AddMinutes(1);
            int minute = (int)(_now - new DateTime(2026, 3, 1, 12, 0, 0)).TotalMinutes;
            var samples = processes.Select(p => (p, v: p.Pss(minute))).Where(x => x.v is not null)
                                   .Select(x => Sample(x.p.Pid, x.p.Name, _now, x.v!.Value)).ToList();
            results.Add(new MonitorRunner(settings, syslog, snapshots, () => _now).Run(samples));
        }
        return results;
    }

    private const long MiB = 1 << 20;

    [Fact]
    public void One_snapshot_and_one_warning_per_growth_episode_not_per_run()
    {
        var syslog = new RecordingSyslog();
        var snaps = new RecordingSnapshots();
        var settings = Settings();
        // grows for 20 minutes, then holds still for 20, then grows again; a flat neighbour throughout
        Func<int, long?> leaky = m => m <= 20 ? 50 * MiB + m * MiB : m <= 40 ? 70 * MiB : 70 * MiB + (m - 40) * MiB;
        var results = RunMinutes(60, settings, syslog, snaps, (100, "leaky", leaky), (200, "calm", _ => 30 * MiB));

        // Episode 1 starts once 5 samples show the growth, episode 2 after the flat stretch.
        Assert.Equal(2, snaps.Taken.Count);
        Assert.All(snaps.Taken, t => Assert.Equal((100, "leaky", settings.SnapshotDirectory), t));
        var starts = results.SelectMany(r => r.Events).Where(e => e.Kind == EpisodeEventKind.Started).ToList();
        Assert.Equal(2, starts.Count);
        Assert.Contains("Snapshot: " + Path.Combine(settings.SnapshotDirectory!, "core.leaky.100.1"), starts[0].Message);
        int firstStart = results.FindIndex(r => r.Events.Any(e => e.Kind == EpisodeEventKind.Started));
        Assert.InRange(firstStart, 3, 5); // minute 4-6: as soon as there are enough samples

        var warnings = syslog.Messages.Where(m => m.Level == SyslogLevel.Warning).ToList();
        Assert.Equal(2, warnings.Count); // no repeat within the hour
        Assert.Contains("leaky (pid 100) memory is growing", warnings[0].Message);
        Assert.Contains("/h over", warnings[0].Message);
        Assert.Single(syslog.Messages, m => m.Level == SyslogLevel.Notice && m.Message.Contains("no longer growing"));
        Assert.DoesNotContain(syslog.Messages, m => m.Message.Contains("calm"));

        // Every run between: Continued, never a second snapshot; statuses recorded.
        Assert.Equal("Growing", results[15].Status);
        Assert.Equal("Ok", results[35].Status);
        using var store = new SqliteHistoryStore(settings.History, readOnly: true);
        Assert.Equal("Growing", store.LastRun("leaky")!.Status);
        var open = Assert.Single(store.OpenEpisodes("leaky"));
        Assert.Equal(Path.Combine(settings.SnapshotDirectory!, "core.leaky.100.2"), open.SnapshotPath);
        Assert.Equal(120, store.Read(new HistoryQuery { Monitor = "leaky" }).Count());
    }

    [Fact]
    public void A_long_episode_is_reminded_hourly_and_ends_when_the_process_exits()
    {
        var syslog = new RecordingSyslog();
        var snaps = new RecordingSnapshots();
        var settings = Settings();
        var results = RunMinutes(150, settings, syslog, snaps, (100, "leaky", m => m < 140 ? 50 * MiB + m * MiB : null));
        Assert.Single(snaps.Taken);
        Assert.Equal(3, syslog.Messages.Count(m => m.Level == SyslogLevel.Warning)); // start, +1 h, +2 h
        var end = results.SelectMany(r => r.Events).Single(e => e.Kind == EpisodeEventKind.Ended);
        Assert.Contains("no longer running", end.Message);
        Assert.Equal("NotRunning", results[^1].Status);
        using var store = new SqliteHistoryStore(settings.History, readOnly: true);
        Assert.Empty(store.OpenEpisodes("leaky"));
        Assert.Contains("Not running: no process matches 'leaky*'", store.LastRun("leaky")!.Message);
    }

    [Fact]
    public void A_restart_under_the_same_name_is_a_new_process_with_its_own_trend()
    {
        var snaps = new RecordingSnapshots();
        var results = RunMinutes(30, Settings(), new RecordingSyslog(), snaps,
            (100, "leaky", m => m <= 15 ? 50 * MiB + m * MiB : null),
            (101, "leaky", m => m > 15 ? 50 * MiB + (m - 15) * MiB : null));
        Assert.Equal(new[] { 100, 101 }, snaps.Taken.Select(t => t.Pid));
        Assert.Equal(101, Assert.Single(results[^1].Trends).Id);
    }

    [Fact]
    public void A_failed_snapshot_is_recorded_once_and_not_retried_every_run()
    {
        var syslog = new RecordingSyslog();
        var snaps = new RecordingSnapshots { Fail = true };
        var settings = Settings();
        var results = RunMinutes(20, settings, syslog, snaps, (100, "leaky", m => 50 * MiB + m * MiB));
        Assert.Single(snaps.Taken);
        Assert.Single(results.SelectMany(r => r.Warnings), w => w.Contains("ptrace: Operation not permitted"));
        Assert.Contains("Snapshot failed", syslog.Messages.Single(m => m.Level == SyslogLevel.Warning).Message);
        using var store = new SqliteHistoryStore(settings.History, readOnly: true);
        Assert.Contains("Operation not permitted", Assert.Single(store.OpenEpisodes("leaky")).SnapshotError);
    }

    [Fact]
    public void Without_the_snapshot_action_nothing_is_taken()
    {
        var snaps = new RecordingSnapshots();
        var results = RunMinutes(10, Settings(action: MonitorAction.None), new RecordingSyslog(), snaps, (100, "leaky", m => 50 * MiB + m * MiB));
        Assert.Empty(snaps.Taken);
        Assert.Contains(results, r => r.Status == "Growing");
    }

    [Fact]
    public void Syslog_that_fails_is_a_warning_not_a_failed_run()
    {
        var results = RunMinutes(8, Settings(), new RecordingSyslog { Fail = true }, new RecordingSnapshots(), (100, "leaky", m => 50 * MiB + m * MiB));
        Assert.All(results, r => Assert.Empty(r.Errors));
        Assert.Contains(results.SelectMany(r => r.Warnings), w => w.StartsWith("Writing to syslog failed") && w.Contains("memory is growing"));
    }

    [Fact]
    public void A_corrupt_history_fails_the_run_clearly_and_says_so_in_syslog()
    {
        var settings = Settings();
        File.WriteAllText(settings.History, new string('z', 4096));
        var syslog = new RecordingSyslog();
        var result = RunMinutes(1, settings, syslog, new RecordingSnapshots(), (100, "leaky", _ => MiB)).Single();
        Assert.Equal("Error", result.Status);
        Assert.Equal("HistoryCorrupt", Assert.Single(result.Errors).ErrorId);
        Assert.Contains(syslog.Messages, m => m.Level == SyslogLevel.Error && m.Message.Contains("cannot be read"));
        Assert.Contains("\"leaky\"", File.ReadAllText(settings.History + ".pending"));
    }

    [Fact]
    public void The_csv_history_keeps_episodes_too()
    {
        var snaps = new RecordingSnapshots();
        var settings = Settings("h.csv");
        RunMinutes(20, settings, new RecordingSyslog(), snaps, (100, "leaky", m => 50 * MiB + m * MiB));
        Assert.Single(snaps.Taken);
        Assert.Single(new CsvHistoryStore(settings.History, readOnly: true).OpenEpisodes("leaky"));
    }

    [Fact]
    public void The_prometheus_textfile_is_replaced_whole_with_escaped_labels()
    {
        string textfile = Path.Combine(_dir, "textfile", "leaktools.prom");
        var settings = Settings(textfile: textfile);
        RunMinutes(8, settings, new RecordingSyslog(), new RecordingSnapshots(), (100, "leaky", m => 50 * MiB + m * MiB), (7, "we\"ird\\name", _ => 5 * MiB));
        string text = File.ReadAllText(textfile);
        Assert.Contains("leaktools_process_memory_bytes{monitor=\"leaky\",name=\"leaky\",pid=\"100\",kind=\"pss\"} " + (58 * MiB), text);
        Assert.Contains("name=\"we\\\"ird\\\\name\"", text);
        Assert.Contains("leaktools_memory_growing{monitor=\"leaky\",name=\"leaky\",pid=\"100\",property=\"pss\"} 1", text);
        Assert.Contains("leaktools_memory_growing{monitor=\"leaky\",name=\"we\\\"ird\\\\name\",pid=\"7\",property=\"pss\"} 0", text);
        Assert.Contains("leaktools_memory_growth_bytes_per_hour{monitor=\"leaky\",name=\"leaky\",pid=\"100\",property=\"pss\"} " + (60 * MiB), text);
        Assert.Contains("leaktools_monitor_processes{monitor=\"leaky\"} 2", text);
        Assert.Matches("leaktools_monitor_last_run_timestamp_seconds\\{monitor=\"leaky\",status=\"Growing\"\\} \\d+", text);
        Assert.Single(Directory.GetFiles(Path.GetDirectoryName(textfile)!)); // no temporary left behind
        // every sample line is "name{labels} value", and HELP/TYPE precede each family
        foreach (string line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
            Assert.Matches(@"^(# (HELP|TYPE) leaktools_\w+ .+|leaktools_\w+\{.*\} -?[0-9.eE+-]+)$", line);
    }

    [LinuxFact("logger")]
    public void Logger_syslog_sends_tag_priority_and_message_through_the_real_logger()
    {
        // A private syslog socket, so the test does not write to the machine's syslog.
        string socketPath = Path.Combine(_dir, "log.sock");
        using var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(socketPath));
        var syslog = new LoggerSyslog(new[] { "logger", "-u", socketPath }, "leaktools-test");
        syslog.Write(SyslogLevel.Warning, "leaky (pid 100) memory is growing: 'quoted' \"and\" $dollar");
        var buffer = new byte[4096];
        socket.ReceiveTimeout = 5000;
        int n = socket.Receive(buffer);
        string datagram = Encoding.UTF8.GetString(buffer, 0, n);
        Assert.StartsWith("<12>", datagram); // facility user (1) * 8 + severity warning (4)
        Assert.Contains("leaktools-test", datagram);
        Assert.EndsWith("leaky (pid 100) memory is growing: 'quoted' \"and\" $dollar", datagram.TrimEnd('\n', '\0'));

        var missing = new LoggerSyslog(new[] { "/no/such/logger" });
        Assert.Equal("SyslogFailed", Assert.Throws<LeakToolsException>(() => missing.Write(SyslogLevel.Error, "x")).ErrorId);
    }
}
