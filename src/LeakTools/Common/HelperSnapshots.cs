using System.Management.Automation;
using System.Text.Json;
using LeakTools.Core.Hosting;

namespace LeakTools.Commands;

/// <summary>Live snapshots through the helper host, for every cmdlet that takes one (Invoke-CoreCapture,
/// and Find-LeakedAllocation / Get-HeapSummary -Id): the host's verbose, warning and error replies
/// go to the cmdlet's streams.</summary>
internal static class HelperSnapshots
{
    /// <summary>Writes a snapshot of <paramref name="request"/>'s process; returns it, or null when it
    /// failed (the error is written, with <paramref name="target"/>) or was cancelled.</summary>
    public static CoreDump? Take(PSCmdlet cmdlet, SnapshotRequest request, object target, CancellationToken cancel)
    {
        bool running = HelperClient.SharedRunning;
        HelperClient helper = HelperClient.Shared;
        if (!running) cmdlet.WriteVerbose($"Started the LeakTools helper process {helper.ProcessId}: {helper.Launch}");
        CoreDump? dump = null;
        foreach (HelperReply reply in helper.Run("core.snapshot", request, cancel))
        {
            switch (reply.Kind)
            {
                case HelperReplyKind.Item when reply.Data is JsonElement data:
                    dump = data.Deserialize<CoreDump>(HelperJson.Options);
                    break;
                case HelperReplyKind.Verbose:
                    cmdlet.WriteVerbose(reply.Message);
                    break;
                case HelperReplyKind.Warning:
                    cmdlet.WriteWarning(reply.Message);
                    break;
                case HelperReplyKind.Error when reply.Failure is not null:
                    cmdlet.WriteError(ErrorRecords.From(reply.Failure.ToException(), target));
                    break;
                case HelperReplyKind.Done when reply.Failure is not null && !cancel.IsCancellationRequested:
                    cmdlet.WriteError(ErrorRecords.From(reply.Failure.ToException(), target));
                    break;
            }
        }
        return dump;
    }
}
