namespace LeakTools.Core.Monitoring;

/// <summary>Takes a core snapshot of a live process for a growth episode (Invoke-CoreCapture
/// -Method Snapshot in the module). Returns the path of the core written; throws
/// <see cref="LeakToolsException"/> when it cannot.</summary>
public interface ISnapshotTaker
{
    string Take(int pid, string name, string? directory);
}
