using System.Management.Automation;
using LeakTools.Core.Reports;

namespace LeakTools.Commands;

/// <summary>What Invoke-Valgrind and Import-ValgrindLog share: writing a report as LeakRecord
/// objects followed by its LeakSummary, with the report's own problems as warnings.</summary>
public abstract class ValgrindReportCommandBase : PSCmdlet
{
    protected void WriteReport(ValgrindReport report, Func<LeakRecord, bool>? include = null)
    {
        foreach (string warning in report.Warnings) WriteWarning(warning);
        foreach (LeakRecord record in report.Records)
        {
            if (include is null || include(record)) WriteObject(record);
        }
        WriteObject(report.Summary);
    }
}
