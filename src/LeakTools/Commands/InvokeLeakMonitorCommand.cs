using System.Management.Automation;
using LeakTools.Core;
using LeakTools.Core.Monitoring;
using LeakTools.Core.ProcFs;

namespace LeakTools.Commands;

/// <summary>Invoke-LeakMonitor: one round of a leak monitor, as the scheduler runs it — sample the
/// matching processes, append to the history, judge each one's trend over the window, warn in
/// syslog (and take one snapshot per growth episode when asked). Emits the trends.</summary>
[Cmdlet(VerbsLifecycle.Invoke, "LeakMonitor", DefaultParameterSetName = NameSet)]
[OutputType(typeof(MemoryTrend))]
public sealed class InvokeLeakMonitorCommand : ProcessTargetCommandBase
{
    private readonly List<int> _ids = new();

    /// <summary>The monitor's name (history records and syslog messages carry it).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? MonitorName { get; set; }

    /// <summary>The history: an SQLite database, or a .csv file.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? History { get; set; }

    /// <summary>How far back the trend is judged (a bare number is seconds).</summary>
    [Parameter]
    [DurationTransformation]
    public TimeSpan Window { get; set; } = TimeSpan.FromHours(1);

    /// <summary>Samples older than this are deleted from the history.</summary>
    [Parameter]
    [DurationTransformation]
    public TimeSpan Retention { get; set; } = MonitorDefinition.DefaultRetention;

    /// <summary>The memory figure judged: Pss (default), Uss, Rss, Swap...</summary>
    [Parameter]
    [ArgumentCompleter(typeof(SizePropertyCompleter))]
    [ValidateNotNullOrEmpty]
    public string Property { get; set; } = "Pss";

    /// <summary>Slower growth than this many bytes per hour is Stable.</summary>
    [Parameter]
    [ValidateRange(0, long.MaxValue)]
    public long MinimumGrowth { get; set; }

    /// <summary>How sure the trend test must be (0.95: p below 0.05).</summary>
    [Parameter]
    [ValidateRange(0.5, 0.999999)]
    public double Confidence { get; set; } = 0.95;

    /// <summary>Snapshot: take one Invoke-CoreCapture -Method Snapshot per growth episode.</summary>
    [Parameter]
    public MonitorAction Action { get; set; }

    /// <summary>Where snapshots go.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? SnapshotDirectory { get; set; }

    /// <summary>Also write node_exporter textfile metrics here (a .prom file, replaced atomically).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? PrometheusTextfile { get; set; }

    /// <summary>The syslog tag (logger -t).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string SyslogTag { get; set; } = "leaktools";

    /// <summary>The logger command and leading arguments (default: logger).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string[] Logger { get; set; } = { "logger" };

    /// <summary>Write nothing to syslog.</summary>
    [Parameter]
    public SwitchParameter NoSyslog { get; set; }

    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        Property = MonitorArguments.Check(this, Property, Window, Retention);
    }

    protected override void ProcessRecord()
    {
        if (ParameterSetName == IdSet) _ids.AddRange(Id);
        else if (ParameterSetName == InputObjectSet) _ids.AddRange(InputObject.Select(p => p.Id));
    }

    protected override void ProcessTarget(ProcessIdentity identity) => throw new NotSupportedException();

    protected override void EndProcessing()
    {
        string monitor = MonitorName ?? (Name is { Length: > 0 } ? string.Join(",", Name) : _ids.Count > 0 ? "pid-" + string.Join(",", _ids) : "all-processes");
        string history = this.ResolvePath(History ?? MonitorNames.DefaultHistory(monitor))!;

        var identities = ParameterSetName == NameSet
            ? ResolveTargets(reportNotFound: false).ToList()
            : _ids.Distinct().Select(pid => ReadById(pid, reportNotFound: false)).OfType<ProcessIdentity>().ToList();
        var samples = identities.Select(i => ReadMemoryGuarded(i)).OfType<ProcessMemory>().ToList();
        WarnSkippedProcesses();
        if (samples.Count == 0 && identities.Count == 0 && Name is { Length: > 0 })
            WriteWarning($"No process matches {string.Join(", ", Name.Select(n => "'" + n + "'"))}; the run is recorded as not running.");

        var settings = new MonitorSettings
        {
            Monitor = monitor,
            ProcessNames = Name ?? Array.Empty<string>(),
            History = history,
            Window = Window,
            Retention = Retention,
            Property = Property,
            Trend = new TrendOptions { MinimumGrowthPerHour = MinimumGrowth, Confidence = Confidence },
            Action = Action,
            SnapshotDirectory = this.ResolvePath(SnapshotDirectory) ?? "/var/lib/leaktools/snapshots",
            PrometheusTextfile = this.ResolvePath(PrometheusTextfile),
        };
        ISyslog? syslog = NoSyslog ? null : new LoggerSyslog(Logger, SyslogTag);
        ISnapshotTaker? snapshots = null;
        if (Action == MonitorAction.Snapshot)
        {
            var taker = new CoreCaptureSnapshotTaker(InvokeCommand);
            if (!taker.Available)
                WriteWarning($"-Action Snapshot needs {CoreCaptureSnapshotTaker.CommandName}, which this session does not have: growth is still recorded and warned about, but no snapshot is taken.");
            snapshots = taker;
        }

        MonitorRunResult result = new MonitorRunner(settings, syslog, snapshots).Run(samples);
        foreach (string warning in result.Warnings) WriteWarning(warning);
        foreach (EpisodeEvent e in result.Events.Where(e => e.Kind != EpisodeEventKind.Ended)) WriteWarning(e.Message);
        foreach (EpisodeEvent e in result.Events.Where(e => e.Kind == EpisodeEventKind.Ended)) WriteVerbose(e.Message);
        foreach (LeakToolsException ex in result.Errors) WriteError(ErrorRecords.From(ex, ex.Target ?? history));
        foreach (MemoryTrend trend in result.Trends) WriteObject(trend);
        WriteVerbose($"Monitor '{monitor}': {result.Status}; {result.SamplesWritten} sample(s) written to {history}.");
    }
}
