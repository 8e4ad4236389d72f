using System.Globalization;
using System.Management.Automation;
using LeakTools.Core;
using LeakTools.Core.Dumps;
using LeakTools.Core.Hosting;
using LeakTools.Core.ProcFs;

namespace LeakTools.Commands;

/// <summary>How Invoke-CoreCapture gets the core.</summary>
public enum CoreCaptureMethod
{
    /// <summary>A live ELF core written by LeakTools; the process goes on running.</summary>
    Snapshot,
    /// <summary>The seed's way: raise RLIMIT_CORE, send SIGABRT, find the kernel's dump. Ends the process.</summary>
    Abort,
}

/// <summary>Invoke-CoreCapture: a core of a running process, as a live snapshot or by SIGABRT.</summary>
[Cmdlet(VerbsLifecycle.Invoke, "CoreCapture", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(CoreDump))]
public sealed class InvokeCoreCaptureCommand : ProcessTargetCommandBase, IDisposable
{
    private readonly CancellationTokenSource _cancel = new();

    /// <summary>Snapshot (default, the process goes on) or Abort (SIGABRT; the process ends).</summary>
    [Parameter]
    public CoreCaptureMethod Method { get; set; } = CoreCaptureMethod.Snapshot;

    /// <summary>Folder for snapshots (default: the current location). Abort dumps go where core_pattern says.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Destination { get; set; }

    /// <summary>Compress the snapshot with zstd (.zst), as systemd-coredump does.</summary>
    [Parameter]
    public SwitchParameter Compress { get; set; }

    /// <summary>Abort: how long to wait for the dump to be complete. Snapshot: how long to wait for every thread to stop.</summary>
    [Parameter]
    [DurationTransformation]
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Abort without asking for confirmation.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    protected override void ProcessRecord()
    {
        if (Timeout <= TimeSpan.Zero)
        {
            ThrowTerminatingError(ErrorRecords.InvalidArgument("InvalidTimeout", "-Timeout must be greater than zero.", Timeout));
        }
        // Named by id (-Id, a number in the first position, or piped objects): a zombie or kernel
        // thread is an error here, not skipped silently as in listings.
        int[]? ids = RequestedIds();
        if (ids is not null)
        {
            foreach (int pid in ids)
            {
                ProcessIdentity identity;
                try { identity = Reader.ReadIdentity(pid); }
                catch (LeakToolsException ex)
                {
                    WriteError(ErrorRecords.From(ex, pid));
                    continue;
                }
                Capture(identity);
            }
            return;
        }
        if (ParameterSetName == NameSet && Name is null)
        {
            ThrowTerminatingError(ErrorRecords.InvalidArgument("TargetRequired",
                "Name the process to capture: Invoke-CoreCapture -Id PID, Invoke-CoreCapture NAME, or pipe processes in.", null));
        }
        base.ProcessRecord();
    }

    protected override void ProcessTarget(ProcessIdentity identity) => Capture(identity);

    private void Capture(ProcessIdentity identity)
    {
        string target = $"{identity.Id} ({identity.Name})";
        try
        {
            if (Method == CoreCaptureMethod.Snapshot)
            {
                if (!ShouldProcess(target, "Write a live core (stops the process for a moment)")) return;
                Snapshot(identity);
            }
            else
            {
                if (!ShouldProcess(target, "Abort with SIGABRT and collect the kernel's core dump (ends the process)")) return;
                if (!ConfirmAbort(target)) return;
                Abort(identity);
            }
        }
        catch (LeakToolsException ex)
        {
            WriteError(ErrorRecords.From(ex, identity.Id));
        }
    }

    /// <summary>Abort behaves as ConfirmImpact High: it asks unless -Force or -Confirm:$false.</summary>
    private bool ConfirmAbort(string target)
    {
        if (Force) return true;
        if (MyInvocation.BoundParameters.TryGetValue("Confirm", out object? confirm) && confirm is SwitchParameter { IsPresent: false }) return true;
        if (MyInvocation.BoundParameters.ContainsKey("Confirm")) return true; // -Confirm already asked in ShouldProcess
        if (GetVariableValue("ConfirmPreference") is ConfirmImpact.None) return true;
        return ShouldContinue($"Process {target} will be ended with SIGABRT so that the kernel writes its core. Continue?", "Abort process");
    }

    private void Snapshot(ProcessIdentity identity)
    {
        string destination = Destination is null
            ? SessionState.Path.CurrentFileSystemLocation.ProviderPath
            : GetUnresolvedProviderPathFromPSPath(Destination);
        var request = new SnapshotRequest
        {
            Pid = identity.Id,
            Destination = destination,
            Compress = Compress,
            StopTimeoutSeconds = Math.Min(Timeout.TotalSeconds, 600),
        };
        CoreDump? dump = HelperSnapshots.Take(this, request, identity.Id, _cancel.Token);
        if (dump is not null) WriteObject(dump);
    }

    private void Abort(ProcessIdentity identity)
    {
        var aborter = new CoreAborter(verbose: WriteVerbose, warning: WriteWarning);
        CoreDump dump = aborter.Abort(identity, Timeout, _cancel.Token);
        WriteObject(dump);
    }

    protected override void StopProcessing() => _cancel.Cancel();

    public void Dispose() => _cancel.Dispose();
}
