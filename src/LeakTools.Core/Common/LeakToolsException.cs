using LeakTools.Core.Interop;

namespace LeakTools.Core;

/// <summary>What went wrong, in the terms a cmdlet needs to pick an error category and id.</summary>
public enum FailureKind
{
    /// <summary>The target (process, file, symbol) does not exist.</summary>
    NotFound,
    /// <summary>The caller lacks a privilege the operation needs.</summary>
    AccessDenied,
    /// <summary>The target process ended while it was being read.</summary>
    ProcessExited,
    /// <summary>The input exists but cannot be understood (corrupt or unexpected format).</summary>
    InvalidData,
    /// <summary>The target is held by someone else (e.g. already traced).</summary>
    ResourceBusy,
    /// <summary>The machine or the target lacks something the operation needs.</summary>
    NotSupported,
    /// <summary>An operating-system call failed for another reason.</summary>
    SystemError,
    /// <summary>Output could not be written (destination full or failing).</summary>
    WriteFailed,
}

/// <summary>Base of every error that LeakTools.Core reports on purpose. Cmdlets turn these into
/// ErrorRecords using <see cref="Kind"/> and <see cref="ErrorId"/>; anything else is a bug.</summary>
public class LeakToolsException : Exception
{
    public LeakToolsException(FailureKind kind, string errorId, string message, object? target = null, Exception? inner = null)
        : base(message, inner)
    {
        Kind = kind;
        ErrorId = errorId;
        Target = target;
    }

    public FailureKind Kind { get; }

    /// <summary>Stable identifier, the first part of the PowerShell FullyQualifiedErrorId.</summary>
    public string ErrorId { get; }

    /// <summary>The object the error is about (a pid, a path).</summary>
    public object? Target { get; }
}

/// <summary>No process with this id (ESRCH/ENOENT on /proc/PID).</summary>
public sealed class ProcessNotFoundException : LeakToolsException
{
    public ProcessNotFoundException(int pid)
        : base(FailureKind.NotFound, "ProcessNotFound", $"Cannot find a process with the process identifier {pid}.", pid)
        => ProcessId = pid;

    public int ProcessId { get; }
}

/// <summary>The process existed when the read began but was gone before it finished.</summary>
public sealed class ProcessExitedException : LeakToolsException
{
    public ProcessExitedException(int pid)
        : base(FailureKind.ProcessExited, "ProcessExited", $"Process {pid} exited while it was being read.", pid)
        => ProcessId = pid;

    public int ProcessId { get; }
}

/// <summary>EACCES/EPERM on a file of /proc/PID.</summary>
public sealed class ProcessAccessDeniedException : LeakToolsException
{
    public ProcessAccessDeniedException(int pid, string path, string? processName = null)
        : base(FailureKind.AccessDenied, "AccessDenied", BuildMessage(pid, path, processName), pid)
    {
        ProcessId = pid;
        Path = path;
    }

    public int ProcessId { get; }
    public string Path { get; }

    private static string BuildMessage(int pid, string path, string? name)
    {
        string who = name is null ? $"process {pid}" : $"process {pid} ({name})";
        return $"Access to {path} of {who} is denied. Reading another user's process memory statistics needs " +
               "root with CAP_SYS_PTRACE (or the same user as the process); /proc mounted with hidepid and " +
               "kernel.yama.ptrace_scope can deny it too.";
    }
}

/// <summary>Maps errno values from a /proc read to the typed exceptions above.</summary>
public static class ProcErrors
{
    public static LeakToolsException FromErrno(int errno, int pid, string path, bool existedBefore = false)
    {
        return errno switch
        {
            Errno.ENOENT or Errno.ESRCH when existedBefore => new ProcessExitedException(pid),
            Errno.ENOENT or Errno.ESRCH => new ProcessNotFoundException(pid),
            Errno.EACCES or Errno.EPERM => new ProcessAccessDeniedException(pid, path),
            _ => new LeakToolsException(FailureKind.SystemError, "ProcReadFailed",
                $"Reading {path} failed: {Errno.Describe(errno)} (errno {errno}).", pid),
        };
    }
}
