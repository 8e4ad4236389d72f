using System.Management.Automation;
using LeakTools.Core;
using LeakTools.Core.Dumps;
using System.Collections.ObjectModel;
using LeakTools.Core.ProcFs;

namespace LeakTools.Commands;

/// <summary>Get-CoreDump: core dumps from abrt, systemd-coredump, core_pattern's folder and plain folders.</summary>
[Cmdlet(VerbsCommon.Get, "CoreDump")]
[OutputType(typeof(CoreDump))]
public sealed class GetCoreDumpCommand : PSCmdlet
{
    /// <summary>Folders (or files) of plain cores. Without it: abrt's spool, systemd-coredump's
    /// folder, core_pattern's folder when it is absolute, and the current location.</summary>
    [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
    [Alias("FullName")]
    public string[]? Path { get; set; }

    /// <summary>Search -Path folders recursively.</summary>
    [Parameter]
    public SwitchParameter Recurse { get; set; }

    /// <summary>abrt's spool folder (default /var/spool/abrt).</summary>
    [Parameter]
    public string? AbrtSpool { get; set; }

    /// <summary>systemd-coredump's folder (default /var/lib/systemd/coredump).</summary>
    [Parameter]
    public string? SystemdCoredumpPath { get; set; }

    private readonly List<CoreDump> _found = new();
    private readonly HashSet<string> _seen = new(StringComparer.Ordinal);

    protected override void ProcessRecord()
    {
        var catalog = new CoreDumpCatalog(WriteWarning);
        if (Path is not null)
        {
            foreach (string p in Path)
            {
                foreach (string resolved in Resolve(p))
                {
                    Collect(catalog.ListFiles(resolved, Recurse));
                }
            }
        }
        bool defaults = Path is null;
        if (AbrtSpool is not null || defaults)
            Collect(catalog.ListAbrt(AbrtSpool is null ? CoreDumpCatalog.DefaultAbrtSpool : GetUnresolvedProviderPathFromPSPath(AbrtSpool)));
        if (SystemdCoredumpPath is not null || defaults)
            Collect(catalog.ListSystemd(SystemdCoredumpPath is null ? CoreDumpCatalog.DefaultSystemdCoredumpPath : GetUnresolvedProviderPathFromPSPath(SystemdCoredumpPath)));
        if (defaults && AbrtSpool is null && SystemdCoredumpPath is null)
        {
            string pattern = ProcFile.TryReadText("/proc/sys/kernel/core_pattern", out _)?.Trim() ?? "core";
            if (CorePattern.Classify(pattern) == CoreHandler.File && pattern.StartsWith('/'))
            {
                string? dir = System.IO.Path.GetDirectoryName(pattern);
                if (dir is not null && !dir.Contains('%')) Collect(catalog.ListFiles(dir));
            }
            Collect(catalog.ListFiles(SessionState.Path.CurrentFileSystemLocation.ProviderPath));
        }
    }

    protected override void EndProcessing()
    {
        foreach (CoreDump d in _found.OrderBy(d => d.Time ?? DateTime.MinValue)) WriteObject(d);
    }

    private void Collect(IEnumerable<CoreDump> dumps)
    {
        try
        {
            foreach (CoreDump d in dumps)
            {
                if (_seen.Add(d.Path)) _found.Add(d);
            }
        }
        catch (UnauthorizedAccessException ex)
        {
            WriteError(ErrorRecords.From(new LeakToolsException(FailureKind.AccessDenied, "AccessDenied", ex.Message, null, ex)));
        }
        catch (IOException ex)
        {
            WriteError(ErrorRecords.From(new LeakToolsException(FailureKind.SystemError, "CoreListFailed", ex.Message, null, ex)));
        }
    }

    private IEnumerable<string> Resolve(string path)
    {
        Collection<string>? resolved = null;
        try
        {
            resolved = GetResolvedProviderPathFromPSPath(path, out _);
        }
        catch (ItemNotFoundException)
        {
            WriteError(ErrorRecords.From(new LeakToolsException(FailureKind.NotFound, "PathNotFound", $"Cannot find path '{path}' because it does not exist.", path)));
        }
        return resolved ?? (IEnumerable<string>)Array.Empty<string>();
    }
}
