using System.Management.Automation;
using LeakTools.Core;
using LeakTools.Core.Monitoring;

namespace LeakTools.Commands;

/// <summary>Get-LeakMonitor: the registered leak monitors (cron files and systemd timers that
/// Register-LeakMonitor wrote), with how their last run went.</summary>
[Cmdlet(VerbsCommon.Get, "LeakMonitor")]
[OutputType(typeof(LeakMonitor))]
public sealed class GetLeakMonitorCommand : PSCmdlet
{
    /// <summary>Monitor names (wildcards); omitted: all.</summary>
    [Parameter(Position = 0)]
    [ValidateNotNullOrEmpty]
    public string[]? Name { get; set; }

    /// <summary>Look under this folder instead of /.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string Root { get; set; } = "/";

    protected override void ProcessRecord()
    {
        var registry = new MonitorRegistry(this.ResolvePath(Root)!);
        foreach (LeakMonitor monitor in MonitorLookup.Find(this, registry, Name))
        {
            AddLastRun(monitor);
            WriteObject(monitor);
        }
    }

    private void AddLastRun(LeakMonitor monitor)
    {
        if (!File.Exists(monitor.History)) return;
        try
        {
            using IHistoryStore store = HistoryStores.Open(monitor.History, readOnly: true, TimeSpan.FromSeconds(1));
            MonitorRun? run = store.LastRun(monitor.Name);
            if (run is null) return;
            monitor.LastRun = run.Time;
            monitor.LastStatus = run.Status;
            monitor.LastMessage = run.Message;
        }
        catch (LeakToolsException ex)
        {
            WriteVerbose($"The history of monitor '{monitor.Name}' cannot be read: {ex.Message}");
        }
    }
}

/// <summary>Finds monitors by name patterns, with ProcessNotFound-style errors for plain names that
/// match nothing.</summary>
internal static class MonitorLookup
{
    public static List<LeakMonitor> Find(PSCmdlet cmdlet, MonitorRegistry registry, string[]? names)
    {
        var patterns = names?.Select(n => new WildcardPattern(n, WildcardOptions.IgnoreCase | WildcardOptions.CultureInvariant)).ToArray();
        List<LeakMonitor> all = registry.List();
        var found = patterns is null ? all : all.Where(m => patterns.Any(p => p.IsMatch(m.Name))).ToList();
        foreach (string n in names ?? Array.Empty<string>())
        {
            if (WildcardPattern.ContainsWildcardCharacters(n) || all.Any(m => string.Equals(m.Name, n, StringComparison.OrdinalIgnoreCase))) continue;
            cmdlet.WriteError(new ErrorRecord(
                new LeakToolsException(FailureKind.NotFound, "MonitorNotFound", $"There is no leak monitor named '{n}' under {registry.Root}.", n),
                "MonitorNotFound", ErrorCategory.ObjectNotFound, n));
        }
        return found;
    }
}
