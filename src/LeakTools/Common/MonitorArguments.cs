using System.Management.Automation;
using LeakTools.Core.Monitoring;

namespace LeakTools.Commands;

/// <summary>Checks shared by the cmdlets that take a monitor's settings (Register-LeakMonitor,
/// Invoke-LeakMonitor).</summary>
internal static class MonitorArguments
{
    /// <summary>Stops the command on a -Property that is not a size of a sample or a -Window or
    /// -Retention that is not positive; returns the property's canonical name.</summary>
    public static string Check(PSCmdlet cmdlet, string property, TimeSpan window, TimeSpan retention)
    {
        if (SampleFields.Find(property) is not { Kind: SampleFields.FieldKind.Long or SampleFields.FieldKind.NullableLong } field)
        {
            cmdlet.ThrowTerminatingError(ErrorRecords.InvalidArgument("UnknownProperty",
                $"'{property}' is not a memory figure; use one of {string.Join(", ", SampleFields.SizeProperties)}.", property));
            return property;
        }
        if (window <= TimeSpan.Zero) cmdlet.ThrowTerminatingError(ErrorRecords.InvalidArgument("InvalidWindow", $"-Window must be positive, not {window}.", window));
        if (retention <= TimeSpan.Zero) cmdlet.ThrowTerminatingError(ErrorRecords.InvalidArgument("InvalidRetention", $"-Retention must be positive, not {retention}.", retention));
        return field.Name;
    }

    /// <summary>A path as the provider sees it (relative to the current location), or null.</summary>
    public static string? ResolvePath(this PSCmdlet cmdlet, string? path) =>
        path is null ? null : cmdlet.SessionState.Path.GetUnresolvedProviderPathFromPSPath(path);
}
