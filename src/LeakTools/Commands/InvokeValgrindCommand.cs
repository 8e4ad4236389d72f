using System.Management.Automation;
using System.Management.Automation.Host;
using LeakTools.Core;
using LeakTools.Core.Reports;

namespace LeakTools.Commands;

/// <summary>Invoke-Valgrind: runs a program under valgrind memcheck, stops it with SIGINT after
/// -Duration (as Ctrl+C does), and emits valgrind's findings as LeakRecord objects followed by a
/// LeakSummary.</summary>
[Cmdlet(VerbsLifecycle.Invoke, "Valgrind")]
[OutputType(typeof(LeakRecord), typeof(LeakSummary))]
public sealed class InvokeValgrindCommand : ValgrindReportCommandBase
{
    private readonly CancellationTokenSource _cancel = new();

    /// <summary>The program: a path, or a name looked up on PATH.</summary>
    [Parameter(Mandatory = true, Position = 0)]
    [ValidateNotNullOrEmpty]
    public string FilePath { get; set; } = "";

    /// <summary>The program's arguments.</summary>
    [Parameter(Position = 1)]
    [Alias("Args")]
    public string[] ArgumentList { get; set; } = Array.Empty<string>();

    /// <summary>Stop the program with SIGINT after this long (seconds or a TimeSpan); without it, run until it exits.</summary>
    [Parameter]
    [DurationTransformation]
    public TimeSpan Duration { get; set; }

    /// <summary>Full (every loss record), Summary (only the figures) or No (memory errors only).</summary>
    [Parameter]
    public ValgrindLeakCheck LeakCheck { get; set; } = ValgrindLeakCheck.Full;

    /// <summary>Which loss records to emit: Definite, Indirect, Possible, Reachable or All (valgrind's default: Definite, Possible).</summary>
    [Parameter]
    [ValidateSet("Definite", "Indirect", "Possible", "Reachable", "All", IgnoreCase = true)]
    public string[] ShowLeakKinds { get; set; } = { "Definite", "Possible" };

    /// <summary>Emit every kind of loss record, still reachable ones too (valgrind's --show-reachable=yes).</summary>
    [Parameter]
    public SwitchParameter ShowReachable { get; set; }

    /// <summary>Valgrind suppression files (--suppressions).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string[] SuppressionPath { get; set; } = Array.Empty<string>();

    /// <summary>Have valgrind write a suppression for every finding (--gen-suppressions=all) into its Suppression property.</summary>
    [Parameter]
    public SwitchParameter GenerateSuppressions { get; set; }

    /// <summary>Further valgrind options, e.g. --track-origins=yes or --num-callers=40.</summary>
    [Parameter]
    [ValidateNotNull]
    public string[] ValgrindArgument { get; set; } = Array.Empty<string>();

    /// <summary>Keep valgrind's raw XML report in this file.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? LogPath { get; set; }

    protected override void StopProcessing() => _cancel.Cancel();

    protected override void EndProcessing()
    {
        var (program, cwd) = ProgramResolution.Resolve(this, FilePath);
        if (MyInvocation.BoundParameters.ContainsKey(nameof(Duration)) && Duration <= TimeSpan.Zero)
            ThrowTerminatingError(ErrorRecords.InvalidArgument("InvalidDuration", $"-Duration must be positive; {Duration} is not.", Duration));

        var suppressions = SuppressionPath.Select(p => ExistingFile(p, "suppression file")).ToList();
        string? logPath = LogPath is null ? null : OutputFile(LogPath);
        var options = new ValgrindOptions
        {
            Program = program,
            Arguments = ArgumentList,
            WorkingDirectory = cwd,
            Duration = MyInvocation.BoundParameters.ContainsKey(nameof(Duration)) ? Duration : null,
            LeakCheck = LeakCheck,
            SuppressionFiles = suppressions,
            GenerateSuppressions = GenerateSuppressions,
            ExtraArguments = ValgrindArgument,
        };

        ValgrindRun run;
        try
        {
            run = ValgrindRun.Start(options);
        }
        catch (LeakToolsException ex) when (ex.ErrorId == "ValgrindNotInstalled")
        {
            ThrowTerminatingError(new ErrorRecord(ex, ex.ErrorId, ErrorCategory.NotInstalled, "valgrind"));
            return;
        }
        catch (LeakToolsException ex)
        {
            ThrowTerminatingError(ErrorRecords.From(ex, FilePath));
            return;
        }
        catch (ArgumentException ex)
        {
            ThrowTerminatingError(ErrorRecords.InvalidArgument("ValgrindOptionReserved", ex.Message, ValgrindArgument));
            return;
        }

        using (run)
        {
            Say(() => WriteVerbose($"Running: {run.CommandLine}"));
            Say(() => WriteVerbose($"valgrind runs as pid {run.ProcessId}; the program's output is on the information stream (-InformationAction Continue, or 6>&1)."));
            foreach (ValgrindEvent ev in run.Events(_cancel.Token))
            {
                switch (ev.Kind)
                {
                    case ValgrindEventKind.Stdout: Say(() => WriteInformation(ev.Text, new[] { "Stdout", "Program" })); break;
                    case ValgrindEventKind.Stderr: Say(() => WriteInformation(ev.Text, new[] { "Stderr", "Program" })); break;
                    case ValgrindEventKind.Warning: Say(() => WriteWarning(ev.Text)); break;
                    default: Say(() => WriteVerbose(ev.Text)); break;
                }
            }

            if (logPath is not null) run.KeepXml(logPath);
            if (_cancel.IsCancellationRequested)
            {
                KeepReportAfterStop(run, logPath);
                return;
            }

            ValgrindRunResult result;
            try
            {
                result = run.Result(logPath);
            }
            catch (LeakToolsException ex)
            {
                WriteError(ErrorRecords.From(ex, FilePath));
                return;
            }
            foreach (ValgrindEvent ev in run.LogMessages())
            {
                if (ev.Kind == ValgrindEventKind.Warning) WriteWarning(ev.Text);
                else WriteVerbose(ev.Text);
            }
            if (options.Duration is TimeSpan d && result.StopSignal is null)
            {
                WriteWarning($"The program exited on its own after {result.RunTime.TotalSeconds:0.0} s with exit code {result.ExitCode}, " +
                             $"before -Duration {d}; here is what valgrind saw.");
            }
            var shown = ShownKinds();
            bool Include(LeakRecord r) => !ValgrindKinds.IsLeak(r.Kind) || (LeakCheck == ValgrindLeakCheck.Full && shown.Contains(r.Kind));
            WriteReport(result.Report, Include);
            if (result.ChildReports.Count > 0)
                WriteVerbose($"valgrind followed {result.ChildReports.Count} more process(es) the program started (--trace-children); their reports follow.");
            foreach (ValgrindReport child in result.ChildReports) WriteReport(child, Include);
        }
    }

    /// <summary>Ctrl+C ended the command: nothing can be emitted any more, so the report is kept on disk.</summary>
    private void KeepReportAfterStop(ValgrindRun run, string? logPath)
    {
        string kept = logPath ?? System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"leaktools-valgrind-{run.ProcessId}.xml");
        if (logPath is null) run.KeepXml(kept);
        if (!File.Exists(kept)) return; // valgrind wrote nothing
        try
        {
            Host?.UI?.WriteWarningLine($"Invoke-Valgrind was stopped; the program was stopped too. valgrind's report is kept: Import-ValgrindLog {kept}");
        }
        catch (Exception e) when (e is PipelineStoppedException or NotImplementedException or InvalidOperationException or HostException)
        {
        }
    }

    private HashSet<LeakKind> ShownKinds()
    {
        var kinds = new HashSet<LeakKind>();
        IEnumerable<string> names = ShowReachable ? new[] { "All" } : ShowLeakKinds;
        foreach (string name in names)
        {
            switch (name.ToLowerInvariant())
            {
                case "definite": kinds.Add(LeakKind.DefinitelyLost); break;
                case "indirect": kinds.Add(LeakKind.IndirectlyLost); break;
                case "possible": kinds.Add(LeakKind.PossiblyLost); break;
                case "reachable": kinds.Add(LeakKind.StillReachable); break;
                default: kinds.UnionWith(new[] { LeakKind.DefinitelyLost, LeakKind.IndirectlyLost, LeakKind.PossiblyLost, LeakKind.StillReachable }); break;
            }
        }
        return kinds;
    }

    /// <summary>Writes to a stream unless the pipeline is stopping: then the run must go on to its
    /// clean end (stopping the program, letting valgrind finish), not die on PipelineStoppedException.</summary>
    private void Say(Action write)
    {
        if (Stopping) return;
        try
        {
            write();
        }
        catch (PipelineStoppedException)
        {
        }
    }

    private string ExistingFile(string path, string what)
    {
        string full = GetUnresolvedProviderPathFromPSPath(path);
        if (!File.Exists(full))
        {
            var ex = new LeakToolsException(FailureKind.NotFound, "PathNotFound", $"Cannot find the {what} '{full}'.", path);
            ThrowTerminatingError(ErrorRecords.From(ex, path));
        }
        return full;
    }

    private string OutputFile(string path)
    {
        string full = GetUnresolvedProviderPathFromPSPath(path);
        string? dir = System.IO.Path.GetDirectoryName(full);
        if (dir is not null && !Directory.Exists(dir))
        {
            var ex = new LeakToolsException(FailureKind.NotFound, "PathNotFound", $"Cannot write -LogPath '{full}': the folder '{dir}' does not exist.", path);
            ThrowTerminatingError(ErrorRecords.From(ex, path));
        }
        return full;
    }
}
