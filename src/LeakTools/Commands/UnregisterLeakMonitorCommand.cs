using System.Management.Automation;
using LeakTools.Core;
using LeakTools.Core.Monitoring;

namespace LeakTools.Commands;

/// <summary>Unregister-LeakMonitor: stops and removes a leak monitor's scheduler files; its history
/// stays unless -RemoveHistory.</summary>
[Cmdlet(VerbsLifecycle.Unregister, "LeakMonitor", SupportsShouldProcess = true, DefaultParameterSetName = NameSet, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(void))]
public sealed class UnregisterLeakMonitorCommand : PSCmdlet
{
    private const string NameSet = "Name";
    private const string InputObjectSet = "InputObject";

    /// <summary>Monitor names (wildcards).</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = NameSet)]
    [ValidateNotNullOrEmpty]
    public string[] Name { get; set; } = Array.Empty<string>();

    /// <summary>Monitors from Get-LeakMonitor.</summary>
    [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = InputObjectSet)]
    public LeakMonitor[] InputObject { get; set; } = Array.Empty<LeakMonitor>();

    /// <summary>Look under this folder instead of / (with -Name).</summary>
    [Parameter(ParameterSetName = NameSet)]
    [ValidateNotNullOrEmpty]
    public string Root { get; set; } = "/";

    /// <summary>Delete the history too (with its WAL, spool and state files).</summary>
    [Parameter]
    public SwitchParameter RemoveHistory { get; set; }

    protected override void ProcessRecord()
    {
        IEnumerable<(LeakMonitor Monitor, MonitorRegistry Registry)> targets = ParameterSetName == InputObjectSet
            ? InputObject.Select(m => (m, new MonitorRegistry(m.Root)))
            : Find();
        foreach (var (monitor, registry) in targets)
        {
            string what = RemoveHistory ? $"Remove leak monitor '{monitor.Name}' and its history {monitor.History}" : $"Remove leak monitor '{monitor.Name}'";
            if (!ShouldProcess(string.Join(", ", monitor.Files), what)) continue;
            try
            {
                foreach (string file in registry.Unregister(monitor, RemoveHistory)) WriteVerbose($"Removed {file}");
            }
            catch (LeakToolsException ex)
            {
                WriteError(ErrorRecords.From(ex, monitor.Name));
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                WriteError(ErrorRecords.Create("MonitorNotRemoved", ErrorCategory.WriteError, $"Removing monitor '{monitor.Name}' failed: {ex.Message}", monitor.Name, ex));
            }
        }
    }

    private IEnumerable<(LeakMonitor, MonitorRegistry)> Find()
    {
        var registry = new MonitorRegistry(this.ResolvePath(Root)!);
        return MonitorLookup.Find(this, registry, Name).Select(m => (m, registry));
    }
}
