using System.Management.Automation;
using LeakTools.Core;
using LeakTools.Core.Heap;
using LeakTools.Core.Hosting;
using LeakTools.Core.ProcFs;
using LeakTools.Core.Symbols;

namespace LeakTools.Commands;

/// <summary>Find-LeakedAllocation and Get-HeapSummary: a core's glibc heap, from -Path (cores,
/// piped CoreDump objects) or from a live process (-Id/-Name/-InputObject), of which a snapshot is
/// taken through the helper host, analyzed and removed unless -KeepCore.</summary>
public abstract class CoreHeapCommandBase : ProcessTargetCommandBase, IDisposable
{
    protected const string PathSet = "Path";

    private readonly CancellationTokenSource _cancel = new();
    private SymbolCache _symbols = SymbolCache.Shared;

    /// <summary>Core files (ours, gcore's, the kernel's; zstd/xz/lz4-compressed ones too).</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = PathSet, ValueFromPipelineByPropertyName = true)]
    [Alias("FullName")]
    [ValidateNotNullOrEmpty]
    public string[] Path { get; set; } = Array.Empty<string>();

    /// <summary>The executable to read symbols from when the core's path is wrong (moved or rebuilt elsewhere).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? ExecutablePath { get; set; }

    /// <summary>Debug directories to search instead of /usr/lib/debug (for libc's debug symbols).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string[]? DebugDirectory { get; set; }

    /// <summary>With -Id/-Name: keep the snapshot (in the current location) instead of removing it.</summary>
    [Parameter(ParameterSetName = IdSet)]
    [Parameter(ParameterSetName = NameSet)]
    [Parameter(ParameterSetName = InputObjectSet)]
    public SwitchParameter KeepCore { get; set; }

    protected CancellationToken Cancel => _cancel.Token;

    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        if (DebugDirectory is not null)
        {
            var dirs = DebugDirectory.Select(d => GetUnresolvedProviderPathFromPSPath(d)).ToArray();
            _symbols = new SymbolCache(SymbolizerOptions.FromEnvironment().With(debugDirectories: dirs));
        }
    }

    protected override void ProcessRecord()
    {
        if (ParameterSetName != PathSet)
        {
            if (ParameterSetName == NameSet && Name is null)
            {
                ThrowTerminatingError(ErrorRecords.InvalidArgument("TargetRequired",
                    $"Name a core (-Path) or a process (-Id, -Name, or pipe processes in).", null));
            }
            base.ProcessRecord();
            return;
        }
        foreach (string p in Path)
        {
            IEnumerable<string> resolved;
            try
            {
                resolved = GetResolvedProviderPathFromPSPath(p, out _);
            }
            catch (ItemNotFoundException)
            {
                WriteError(ErrorRecords.From(new LeakToolsException(FailureKind.NotFound, "CoreNotFound", $"Cannot find the core file '{p}'.", p)));
                continue;
            }
            foreach (string core in resolved) Analyze(core, core, core);
        }
    }

    protected override void ProcessTarget(ProcessIdentity identity)
    {
        string destination = KeepCore ? SessionState.Path.CurrentFileSystemLocation.ProviderPath : System.IO.Path.GetTempPath();
        var request = new SnapshotRequest { Pid = identity.Id, Destination = destination, StopTimeoutSeconds = 60, IncludeAllWritable = true };
        CoreDump? dump = HelperSnapshots.Take(this, request, identity.Id, Cancel);
        if (dump is null) return;
        try
        {
            Analyze(dump.Path, KeepCore ? dump.Path : null, identity.Id);
        }
        finally
        {
            if (KeepCore) WriteVerbose($"Kept the snapshot {dump.Path}.");
            else File.Delete(dump.Path);
        }
    }

    private void Analyze(string path, string? label, object target)
    {
        CoreHeapAnalysis analysis;
        try
        {
            analysis = CoreHeapAnalysis.Open(path, new HeapAnalysisOptions
            {
                ExecutablePath = ExecutablePath is null ? null : GetUnresolvedProviderPathFromPSPath(ExecutablePath),
                Symbols = _symbols,
                CoreLabel = label,
                HasCoreLabel = true,
            }, Cancel);
        }
        catch (LeakToolsException ex)
        {
            WriteError(ErrorRecords.From(ex, target));
            return;
        }
        using (analysis)
        {
            HeapScanStatistics s = analysis.Statistics;
            WriteVerbose($"{path}: glibc {analysis.LibcVersion} ({analysis.LibcPath}; malloc symbols: {s.LibcSymbols}); {s.Arenas} arena(s), " +
                         $"{s.Chunks:N0} chunks, {s.MmappedBlocks} mmapped; {s.HeapBytes:N0} heap bytes; read in {(s.OpenTime + s.WalkTime).TotalMilliseconds:0} ms.");
            try
            {
                Process(analysis);
            }
            catch (LeakToolsException ex)
            {
                WriteError(ErrorRecords.From(ex, target));
            }
            foreach (string warning in analysis.Warnings) WriteWarning($"{System.IO.Path.GetFileName(path)}: {warning}");
        }
    }

    /// <summary>Writes the cmdlet's objects for one analyzed core.</summary>
    protected abstract void Process(CoreHeapAnalysis analysis);

    protected override void StopProcessing() => _cancel.Cancel();

    public void Dispose()
    {
        _cancel.Dispose();
        GC.SuppressFinalize(this);
    }
}
