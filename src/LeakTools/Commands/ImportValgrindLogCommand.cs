using System.Management.Automation;
using LeakTools.Core;
using LeakTools.Core.Reports;

namespace LeakTools.Commands;

/// <summary>Import-ValgrindLog: valgrind memcheck reports (--xml=yes files and text logs) as
/// LeakRecord objects and a LeakSummary per report.</summary>
[Cmdlet(VerbsData.Import, "ValgrindLog", DefaultParameterSetName = PathSet)]
[OutputType(typeof(LeakRecord), typeof(LeakSummary))]
public sealed class ImportValgrindLogCommand : ValgrindReportCommandBase
{
    private const string PathSet = "Path";
    private const string LiteralPathSet = "LiteralPath";

    /// <summary>Report files; wildcards allowed.</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = PathSet, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string[] Path { get; set; } = Array.Empty<string>();

    /// <summary>Report files, taken literally (no wildcards); bound from Get-ChildItem's PSPath.</summary>
    [Parameter(Mandatory = true, ParameterSetName = LiteralPathSet, ValueFromPipelineByPropertyName = true)]
    [Alias("PSPath", "LP")]
    [ValidateNotNullOrEmpty]
    public string[] LiteralPath { get; set; } = Array.Empty<string>();

    protected override void ProcessRecord()
    {
        foreach (string file in ResolveFiles())
        {
            List<ValgrindReport> reports;
            try
            {
                reports = ValgrindLogReader.Read(file);
            }
            catch (LeakToolsException ex)
            {
                WriteError(ErrorRecords.From(ex, file));
                continue;
            }
            foreach (ValgrindReport report in reports) WriteReport(report);
        }
    }

    private IEnumerable<string> ResolveFiles()
    {
        bool literal = ParameterSetName == LiteralPathSet;
        foreach (string path in literal ? LiteralPath : Path)
        {
            List<string> files = new();
            try
            {
                ProviderInfo provider;
                if (literal) files.Add(SessionState.Path.GetUnresolvedProviderPathFromPSPath(path, out provider, out _));
                else files.AddRange(SessionState.Path.GetResolvedProviderPathFromPSPath(path, out provider));
                if (provider.Name != "FileSystem")
                {
                    WriteError(ErrorRecords.InvalidArgument("NotAFileSystemPath", $"'{path}' is not a file system path: valgrind reports are files.", path));
                    continue;
                }
            }
            catch (ItemNotFoundException)
            {
                var ex = new LeakToolsException(FailureKind.NotFound, "PathNotFound", $"Cannot find the valgrind report '{path}': it does not exist.", path);
                WriteError(ErrorRecords.From(ex, path));
                continue;
            }
            catch (Exception e) when (e is ProviderNotFoundException or System.Management.Automation.DriveNotFoundException or PSArgumentException)
            {
                WriteError(ErrorRecords.InvalidArgument("InvalidPath", e.Message, path));
                continue;
            }
            foreach (string f in files)
            {
                // a wildcard that also matches folders means the files among them
                if (!literal && WildcardPattern.ContainsWildcardCharacters(path) && Directory.Exists(f)) continue;
                yield return f;
            }
        }
    }
}
