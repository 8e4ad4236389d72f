using System.Management.Automation;
using LeakTools.Core;

namespace LeakTools.Commands;

/// <summary>Turns LeakTools.Core's typed exceptions into ErrorRecords with a stable id and the
/// right category.</summary>
internal static class ErrorRecords
{
    public static ErrorCategory CategoryOf(FailureKind kind) => kind switch
    {
        FailureKind.NotFound => ErrorCategory.ObjectNotFound,
        FailureKind.AccessDenied => ErrorCategory.PermissionDenied,
        FailureKind.ProcessExited => ErrorCategory.ObjectNotFound,
        FailureKind.InvalidData => ErrorCategory.InvalidData,
        FailureKind.ResourceBusy => ErrorCategory.ResourceBusy,
        FailureKind.NotSupported => ErrorCategory.NotImplemented,
        FailureKind.WriteFailed => ErrorCategory.WriteError,
        _ => ErrorCategory.NotSpecified,
    };

    public static ErrorRecord From(LeakToolsException ex, object? target = null) =>
        new(ex, ex.ErrorId, CategoryOf(ex.Kind), target ?? ex.Target);

    public static ErrorRecord Create(string errorId, ErrorCategory category, string message, object? target, Exception? inner = null) =>
        new(new LeakToolsException(FailureKind.SystemError, errorId, message, target, inner), errorId, category, target);

    public static ErrorRecord InvalidArgument(string errorId, string message, object? target) =>
        new(new PSArgumentException(message), errorId, ErrorCategory.InvalidArgument, target);
}
