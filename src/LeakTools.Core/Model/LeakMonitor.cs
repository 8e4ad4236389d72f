namespace LeakTools;

/// <summary>Which system scheduler runs a monitor.</summary>
public enum MonitorScheduler { Systemd, Cron }

/// <summary>What a monitor does, beyond a syslog warning, when a process keeps growing.</summary>
public enum MonitorAction { None, Snapshot }

/// <summary>A registered leak monitor (Register-/Get-/Unregister-LeakMonitor): what it watches,
/// how often, where its history is, and how its last run went.</summary>
public sealed class LeakMonitor
{
    public string Name { get; set; } = "";
    /// <summary>Process name patterns; empty means every process.</summary>
    public string[] ProcessName { get; set; } = Array.Empty<string>();
    public MonitorScheduler Scheduler { get; set; }
    public TimeSpan Interval { get; set; }
    /// <summary>How far back each run judges the trend.</summary>
    public TimeSpan Window { get; set; }
    /// <summary>Samples older than this are deleted from the history.</summary>
    public TimeSpan Retention { get; set; }
    public string History { get; set; } = "";
    public MonitorAction Action { get; set; }
    public string? SnapshotDirectory { get; set; }
    public string? PrometheusTextfile { get; set; }
    public string Property { get; set; } = "Pss";
    public long MinimumGrowth { get; set; }
    public double Confidence { get; set; }
    /// <summary>The command the scheduler runs, as written in its file.</summary>
    public string Command { get; set; } = "";
    /// <summary>The files that make up the monitor (cron file, or service, timer and its wants link).</summary>
    public string[] Files { get; set; } = Array.Empty<string>();
    /// <summary>Cron: the file is in place. Systemd: the timer is enabled (linked into timers.target.wants).</summary>
    public bool Enabled { get; set; }
    /// <summary>The root the files were found under ("/" on a real system).</summary>
    public string Root { get; set; } = "/";
    public DateTime? LastRun { get; set; }
    /// <summary>Ok, Growing, NotRunning or Error; null before the first run or if the history cannot be read.</summary>
    public string? LastStatus { get; set; }
    public string? LastMessage { get; set; }

    public override string ToString() => Name;
}
