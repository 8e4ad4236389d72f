using System.Management.Automation;
using LeakTools.Core;
using LeakTools.Core.Monitoring;

namespace LeakTools.Commands;

/// <summary>Get-MemoryHistory: reads the samples a monitor (or Export-Csv) stored back as
/// <see cref="ProcessMemory"/> objects, in time order.</summary>
[Cmdlet(VerbsCommon.Get, "MemoryHistory")]
[OutputType(typeof(ProcessMemory))]
public sealed class GetMemoryHistoryCommand : PSCmdlet
{
    /// <summary>The history: an SQLite database, or a .csv file.</summary>
    [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
    [Alias("History", "FullName")]
    [ValidateNotNullOrEmpty]
    public string? Path { get; set; }

    /// <summary>Only samples of processes with these names (wildcards).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string[]? Name { get; set; }

    /// <summary>Only samples of these process ids.</summary>
    [Parameter]
    [Alias("PID")]
    public int[]? Id { get; set; }

    /// <summary>Only samples recorded by this monitor (an SQLite history can hold several); without
    /// -Path, the monitor's default history.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? MonitorName { get; set; }

    /// <summary>Only samples at or after this time.</summary>
    [Parameter]
    public DateTime? Since { get; set; }

    /// <summary>Only samples at or before this time.</summary>
    [Parameter]
    public DateTime? Until { get; set; }

    /// <summary>Only the samples of this last stretch of time (a bare number is seconds).</summary>
    [Parameter]
    [DurationTransformation]
    public TimeSpan? Last { get; set; }

    protected override void ProcessRecord()
    {
        string? path = Path ?? (MonitorName is not null ? MonitorNames.DefaultHistory(MonitorName) : null);
        if (path is null)
        {
            ThrowTerminatingError(ErrorRecords.InvalidArgument("HistoryPathRequired", "Give the history with -Path (or -MonitorName for a monitor's default history).", null));
            return;
        }
        path = this.ResolvePath(path)!;
        var patterns = Name?.Select(n => new WildcardPattern(n, WildcardOptions.IgnoreCase | WildcardOptions.CultureInvariant)).ToArray();
        var query = new HistoryQuery
        {
            Monitor = MonitorName,
            Since = Last is { } last ? DateTime.Now - last : Since,
            Until = Until,
            Ids = Id,
            NameFilter = patterns is null ? null : n => patterns.Any(p => p.IsMatch(n)),
        };
        try
        {
            using IHistoryStore store = HistoryStores.Open(path, readOnly: true);
            foreach (ProcessMemory sample in store.Read(query)) WriteObject(sample);
        }
        catch (LeakToolsException ex)
        {
            WriteError(ErrorRecords.From(ex, path));
        }
    }
}
