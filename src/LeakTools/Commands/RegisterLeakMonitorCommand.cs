using System.Management.Automation;
using System.Runtime.InteropServices;
using LeakTools.Core;
using LeakTools.Core.Monitoring;

namespace LeakTools.Commands;

/// <summary>Register-LeakMonitor: a leak monitor that the system's own scheduler runs (a systemd
/// .service + .timer pair, or a file in /etc/cron.d), calling Invoke-LeakMonitor with absolute paths
/// to pwsh and this module.</summary>
[Cmdlet(VerbsLifecycle.Register, "LeakMonitor", SupportsShouldProcess = true)]
[OutputType(typeof(LeakMonitor))]
public sealed class RegisterLeakMonitorCommand : PSCmdlet
{
    /// <summary>Process name patterns to watch (wildcards); omitted: every process.</summary>
    [Parameter(Position = 0)]
    [ValidateNotNullOrEmpty]
    public string[]? Name { get; set; }

    /// <summary>How often the monitor runs (a bare number is seconds).</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [DurationTransformation]
    public TimeSpan Interval { get; set; }

    /// <summary>The monitor's own name (unit and file names derive from it); default: the process names.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? MonitorName { get; set; }

    /// <summary>Systemd or Cron; default systemd where it runs, else cron.</summary>
    [Parameter]
    public MonitorScheduler Scheduler { get; set; }

    /// <summary>The history: an SQLite database (default /var/lib/leaktools/NAME.db), or a .csv file.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? History { get; set; }

    /// <summary>How far back each run judges the trend; default 48 intervals, at least an hour.</summary>
    [Parameter]
    [DurationTransformation]
    public TimeSpan Window { get; set; }

    /// <summary>Samples older than this are deleted (default 30 days).</summary>
    [Parameter]
    [DurationTransformation]
    public TimeSpan Retention { get; set; } = MonitorDefinition.DefaultRetention;

    /// <summary>Snapshot: one Invoke-CoreCapture -Method Snapshot per growth episode.</summary>
    [Parameter]
    public MonitorAction Action { get; set; }

    /// <summary>Where snapshots go (default /var/lib/leaktools/snapshots).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? SnapshotDirectory { get; set; }

    /// <summary>Also write node_exporter textfile metrics to this .prom file.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? PrometheusTextfile { get; set; }

    /// <summary>The memory figure judged (default Pss).</summary>
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

    /// <summary>The syslog tag of the monitor's messages.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string SyslogTag { get; set; } = "leaktools";

    /// <summary>The pwsh the scheduler starts (an executable, or pwsh.dll run by dotnet); default: this one.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? PwshPath { get; set; }

    /// <summary>Write the scheduler files under this folder instead of / (for tests and images).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string Root { get; set; } = "/";

    /// <summary>Replace a monitor of the same name.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    protected override void EndProcessing()
    {
        MonitorScheduler scheduler = MyInvocation.BoundParameters.ContainsKey(nameof(Scheduler)) ? Scheduler : MonitorRegistry.DefaultScheduler;
        string monitorName = MonitorName ?? (Name is { Length: > 0 } ? string.Join(",", Name) : "all-processes");
        try
        {
            if (scheduler == MonitorScheduler.Cron) SchedulerFiles.CronSchedule(Interval);
            else SchedulerFiles.ValidateInterval(Interval, scheduler);
        }
        catch (LeakToolsException ex)
        {
            ThrowTerminatingError(new ErrorRecord(ex, ex.ErrorId, ErrorCategory.InvalidArgument, Interval));
        }
        TimeSpan window = MyInvocation.BoundParameters.ContainsKey(nameof(Window)) ? Window : MonitorDefinition.DefaultWindow(Interval);
        string property = MonitorArguments.Check(this, Property, window, Retention);

        var registry = new MonitorRegistry(this.ResolvePath(Root)!);
        List<LeakMonitor> existing = registry.Find(monitorName);
        if (existing.Count > 0 && !Force)
        {
            WriteError(new ErrorRecord(
                new LeakToolsException(FailureKind.InvalidData, "MonitorExists", $"A monitor named '{monitorName}' is already registered ({existing[0].Scheduler}: {string.Join(", ", existing[0].Files)}). Use -Force to replace it, or -MonitorName to add another.", monitorName),
                "MonitorExists", ErrorCategory.ResourceExists, monitorName));
            return;
        }

        var definition = new MonitorDefinition
        {
            Name = monitorName,
            ProcessName = Name ?? Array.Empty<string>(),
            Scheduler = scheduler,
            Interval = Interval,
            Window = window,
            Retention = Retention,
            History = this.ResolvePath(History) ?? registry.UnderRoot(MonitorNames.DefaultHistory(monitorName)),
            Action = Action,
            SnapshotDirectory = Action == MonitorAction.Snapshot ? this.ResolvePath(SnapshotDirectory) ?? registry.UnderRoot("/var/lib/leaktools/snapshots") : null,
            PrometheusTextfile = this.ResolvePath(PrometheusTextfile),
            Property = property,
            MinimumGrowth = MinimumGrowth,
            Confidence = Confidence,
            SyslogTag = SyslogTag,
        };

        MonitorCommand command = BuildCommand(definition);
        string target = string.Join(", ", registry.FilesOf(monitorName, scheduler).Take(scheduler == MonitorScheduler.Cron ? 1 : 2));
        if (!ShouldProcess(target, $"Register leak monitor '{monitorName}' ({scheduler}, every {SchedulerFiles.Describe(Interval)})")) return;
        try
        {
            foreach (LeakMonitor old in existing) registry.Unregister(old, removeHistory: false);
            var (monitor, notes) = registry.Register(definition, command);
            foreach (string note in notes) WriteWarning(note);
            WriteObject(monitor);
        }
        catch (LeakToolsException ex)
        {
            WriteError(ErrorRecords.From(ex, monitorName));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            WriteError(ErrorRecords.Create("MonitorNotWritten", ErrorCategory.WriteError, $"Writing the monitor's files under {registry.Root} failed: {ex.Message}", monitorName, ex));
        }
    }

    private MonitorCommand BuildCommand(MonitorDefinition definition)
    {
        string modulePath = ModuleManifest();
        var args = new List<string>(PwshCommand());
        args.AddRange(new[] { "-NoProfile", "-NonInteractive", "-Command", definition.InvokeScript(modulePath) });
        string home = Environment.GetEnvironmentVariable("HOME") is { Length: > 0 } h ? h : Environment.UserName == "root" ? "/root" : "/tmp";
        var env = new List<KeyValuePair<string, string>>
        {
            new("HOME", home),
            new("PATH", SchedulerFiles.DefaultPath),
        };
        string? dotnetRoot = DotnetRoot();
        if (dotnetRoot is not null) env.Add(new("DOTNET_ROOT", dotnetRoot));
        return new MonitorCommand(args, env, Environment.UserName);
    }

    /// <summary>This pwsh, as an absolute command: the dotnet muxer plus pwsh.dll when pwsh runs as a
    /// .NET tool (dotnet pwsh), else its executable; -PwshPath overrides.</summary>
    private IReadOnlyList<string> PwshCommand()
    {
        if (PwshPath is not null)
        {
            string path = this.ResolvePath(PwshPath)!;
            if (!File.Exists(path)) ThrowTerminatingError(ErrorRecords.InvalidArgument("PwshNotFound", $"-PwshPath {path} does not exist.", path));
            return path.EndsWith(".dll", StringComparison.OrdinalIgnoreCase) ? new[] { Muxer(), path } : new[] { path };
        }
        string process = Environment.ProcessPath ?? "";
        string psHome = SessionState.PSVariable.GetValue("PSHOME")?.ToString() ?? "";
        string exe = Path.GetFileName(process);
        if (exe.StartsWith("pwsh", StringComparison.Ordinal) && File.Exists(process)) return new[] { process };
        if (exe.StartsWith("dotnet", StringComparison.Ordinal) && File.Exists(Path.Combine(psHome, "pwsh.dll")))
            return new[] { process, Path.Combine(psHome, "pwsh.dll") };
        if (File.Exists(Path.Combine(psHome, "pwsh"))) return new[] { Path.Combine(psHome, "pwsh") };
        ThrowTerminatingError(ErrorRecords.InvalidArgument("PwshNotFound",
            $"Cannot tell which pwsh runs this session ({process}); give it with -PwshPath (a pwsh executable or pwsh.dll).", process));
        return Array.Empty<string>();
    }

    private static string Muxer()
    {
        string? root = DotnetRoot();
        string muxer = root is null ? "/usr/bin/dotnet" : Path.Combine(root, "dotnet");
        return File.Exists(muxer) ? muxer : "/usr/bin/dotnet";
    }

    /// <summary>The .NET install this session runs on (…/shared/Microsoft.NETCore.App/VERSION/ → …).</summary>
    private static string? DotnetRoot()
    {
        string runtime = RuntimeEnvironment.GetRuntimeDirectory().TrimEnd('/');
        string? root = Path.GetDirectoryName(Path.GetDirectoryName(Path.GetDirectoryName(runtime)));
        return root is not null && File.Exists(Path.Combine(root, "dotnet")) ? root : null;
    }

    private string ModuleManifest()
    {
        PSModuleInfo? module = MyInvocation.MyCommand.Module;
        if (module is not null)
        {
            string manifest = Path.Combine(module.ModuleBase, "LeakTools.psd1");
            return File.Exists(manifest) ? manifest : module.Path;
        }
        return Path.Combine(Path.GetDirectoryName(typeof(RegisterLeakMonitorCommand).Assembly.Location)!, "LeakTools.psd1");
    }
}
