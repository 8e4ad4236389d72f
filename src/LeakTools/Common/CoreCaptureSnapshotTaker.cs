using System.Management.Automation;
using LeakTools.Core;
using LeakTools.Core.Monitoring;

namespace LeakTools.Commands;

/// <summary>Takes a monitor's snapshot with the module's own <c>Invoke-CoreCapture -Method
/// Snapshot</c>, looked up at run time in the caller's session: a build without it says so
/// clearly instead of failing to load.</summary>
internal sealed class CoreCaptureSnapshotTaker : ISnapshotTaker
{
    public const string CommandName = "Invoke-CoreCapture";
    private readonly CommandInvocationIntrinsics _invoke;

    public CoreCaptureSnapshotTaker(CommandInvocationIntrinsics invoke) => _invoke = invoke;

    public bool Available => Find() is not null;

    private CommandInfo? Find() => _invoke.GetCommand(CommandName, CommandTypes.Cmdlet | CommandTypes.Function | CommandTypes.Alias);

    public string Take(int pid, string name, string? directory)
    {
        CommandInfo command = Find() ?? throw new LeakToolsException(FailureKind.NotSupported, "SnapshotUnavailable",
            $"{CommandName} is not available in this session, so no snapshot of {name} ({pid}) was taken. It comes with LeakTools' core capture " +
            "(Invoke-CoreCapture -Method Snapshot); use a build that has it, or register the monitor with -Action None.", pid);
        if (directory is not null) Directory.CreateDirectory(directory);
        using var ps = PowerShell.Create(RunspaceMode.CurrentRunspace);
        ps.AddCommand(command).AddParameter("Id", new[] { pid }).AddParameter("Method", "Snapshot").AddParameter("Confirm", false);
        if (directory is not null) ps.AddParameter("Destination", directory);
        IReadOnlyList<PSObject> output;
        try
        {
            output = ps.Invoke();
        }
        catch (RuntimeException ex)
        {
            throw new LeakToolsException(FailureKind.SystemError, "SnapshotFailed", $"{CommandName} failed for {name} ({pid}): {ex.Message}", pid, ex);
        }
        if (ps.Streams.Error.Count > 0)
            throw new LeakToolsException(FailureKind.SystemError, "SnapshotFailed", $"{CommandName} failed for {name} ({pid}): {ps.Streams.Error[0]}", pid);
        string? path = output.Select(o => o.Properties["Path"]?.Value?.ToString()).FirstOrDefault(p => !string.IsNullOrEmpty(p));
        return path ?? throw new LeakToolsException(FailureKind.SystemError, "SnapshotFailed", $"{CommandName} wrote no core for {name} ({pid}).", pid);
    }
}
