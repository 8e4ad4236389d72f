using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using LeakTools.Core.Interop;

namespace LeakTools.Core.Reports;

/// <summary>How much leak checking valgrind does at exit.</summary>
public enum ValgrindLeakCheck
{
    /// <summary>Every loss record with its allocation stack (--leak-check=full).</summary>
    Full,
    /// <summary>Only the LEAK SUMMARY figures; valgrind still checks fully, the records are not emitted.</summary>
    Summary,
    /// <summary>No leak check (--leak-check=no): memory errors only.</summary>
    No,
}

/// <summary>What Invoke-Valgrind runs and how it stops it.</summary>
public sealed class ValgrindOptions
{
    /// <summary>The program, resolved (<see cref="ExecutableLocator.ResolveProgram"/>).</summary>
    public required string Program { get; init; }
    public IReadOnlyList<string> Arguments { get; init; } = Array.Empty<string>();
    public string WorkingDirectory { get; init; } = Environment.CurrentDirectory;
    /// <summary>Stop the program with SIGINT after this long; null runs it until it exits (or the run is cancelled).</summary>
    public TimeSpan? Duration { get; init; }
    public ValgrindLeakCheck LeakCheck { get; init; } = ValgrindLeakCheck.Full;
    public IReadOnlyList<string> SuppressionFiles { get; init; } = Array.Empty<string>();
    /// <summary>--gen-suppressions=all: each record carries a suppression ready for a .supp file.</summary>
    public bool GenerateSuppressions { get; init; }
    /// <summary>Further valgrind options (--track-origins=yes, --num-callers=40...).</summary>
    public IReadOnlyList<string> ExtraArguments { get; init; } = Array.Empty<string>();
    /// <summary>valgrind itself; null looks it up on PATH.</summary>
    public string? ValgrindPath { get; init; }
    /// <summary>How long each stop signal (SIGINT, then SIGTERM) gets before the next, stronger one.</summary>
    public TimeSpan StopGrace { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>After a cancel, how long valgrind may take to write its leak report before it is killed.</summary>
    public TimeSpan ReportTimeoutAfterCancel { get; init; } = TimeSpan.FromSeconds(60);
}

public enum ValgrindEventKind { Stdout, Stderr, Verbose, Warning }

/// <summary>Something to tell the user while valgrind runs: a line of the program's output, or a notice.</summary>
public readonly record struct ValgrindEvent(ValgrindEventKind Kind, string Text);

/// <summary>The outcome of a valgrind run.</summary>
public sealed class ValgrindRunResult
{
    public required ValgrindReport Report { get; init; }
    /// <summary>Reports of the programs it ran that valgrind followed (--trace-children=yes), one per process.</summary>
    public IReadOnlyList<ValgrindReport> ChildReports { get; init; } = Array.Empty<ValgrindReport>();
    public int ExitCode { get; init; }
    /// <summary>The strongest signal LeakTools had to send (SIGINT, SIGTERM, SIGKILL), or null when the program ended by itself.</summary>
    public string? StopSignal { get; init; }
    public TimeSpan RunTime { get; init; }
}

/// <summary>One run of a program under valgrind memcheck with XML output, started by
/// <see cref="Start"/>, driven by <see cref="Events"/> (which also stops it: SIGINT after the
/// duration or on cancel, as Ctrl+C does in a terminal; SIGTERM and SIGKILL if it does not end),
/// read by <see cref="Result"/>. Valgrind runs in a session of its own, so the stop signals reach
/// every process of the run, and none is left behind: <see cref="Dispose"/> kills what remains.</summary>
public sealed partial class ValgrindRun : IDisposable
{
    private const int SIGINT = 2, SIGKILL = 9, SIGTERM = 15;
    private static readonly Version s_xtreeSince = new(3, 13);
    private static string? s_versionOf;
    private static Version? s_version;

    private readonly ValgrindOptions _options;
    private readonly Process _process;
    private readonly string _tempDir;
    private readonly bool _ownGroup;
    private readonly bool _xtree;
    private readonly ConcurrentQueue<ValgrindEvent> _events = new();
    private readonly Queue<string> _stderrTail = new();
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private volatile bool _stdoutClosed, _stderrClosed;
    private string? _stopSignal;
    private bool _finished;
    private long _xmlScanned;

    private ValgrindRun(ValgrindOptions options, string valgrind, string tempDir)
    {
        _options = options;
        _tempDir = tempDir;
        _xtree = VersionOf(valgrind) is not Version v || v >= s_xtreeSince;

        // setsid(1) puts valgrind in a session and process group of its own (it execs in place:
        // the pid stays valgrind's, which is also the program's): stop signals go to the group.
        string? setsid = ExecutableLocator.FindOnPath("setsid");
        _ownGroup = setsid is not null;
        var psi = new ProcessStartInfo(setsid ?? valgrind)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = options.WorkingDirectory,
        };
        if (setsid is not null) psi.ArgumentList.Add(valgrind);
        foreach (string a in ValgrindArguments()) psi.ArgumentList.Add(a);
        psi.ArgumentList.Add(options.Program);
        foreach (string a in options.Arguments) psi.ArgumentList.Add(a);
        CommandLine = string.Join(' ', psi.ArgumentList.Skip(setsid is null ? 0 : 1).Prepend(valgrind).Select(Quote));

        _process = new Process { StartInfo = psi };
        _process.Start();
        ProcessId = _process.Id;
        // Threads of their own, not the thread pool's async reads: a busy pool must not delay
        // the program's output or lose valgrind's last words before it exits.
        StartReader(_process.StandardOutput, ValgrindEventKind.Stdout, () => _stdoutClosed = true);
        StartReader(_process.StandardError, ValgrindEventKind.Stderr, () => _stderrClosed = true);
    }

    private void StartReader(StreamReader reader, ValgrindEventKind kind, Action closed)
    {
        var thread = new Thread(() =>
        {
            try
            {
                string? line;
                while ((line = reader.ReadLine()) is not null)
                {
                    _events.Enqueue(new ValgrindEvent(kind, line));
                    if (kind != ValgrindEventKind.Stderr) continue;
                    lock (_stderrTail)
                    {
                        _stderrTail.Enqueue(line);
                        if (_stderrTail.Count > 20) _stderrTail.Dequeue();
                    }
                }
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException)
            {
            }
            finally
            {
                closed();
            }
        })
        { IsBackground = true, Name = $"valgrind {kind}" };
        thread.Start();
    }

    /// <summary>Pid of valgrind, which is also the pid of the program it runs.</summary>
    public int ProcessId { get; }

    /// <summary>The valgrind command line, for -Verbose.</summary>
    public string CommandLine { get; }

    /// <summary>valgrind's raw XML report (in a temporary folder removed by Dispose unless kept).</summary>
    public string XmlPath => XmlPathOf(ProcessId);

    /// <summary>valgrind's commentary (-v -v: load addresses of every object).</summary>
    public string LogPath => LogPathOf(ProcessId);

    // %p: each process valgrind follows (--trace-children=yes) writes files of its own
    private string XmlPathOf(object pid) => Path.Combine(_tempDir, $"valgrind.{pid}.xml");

    private string LogPathOf(object pid) => Path.Combine(_tempDir, $"valgrind.{pid}.log");

    /// <summary>Starts the program under valgrind. Throws ValgrindNotInstalled when there is no valgrind.</summary>
    public static ValgrindRun Start(ValgrindOptions options)
    {
        string valgrind = options.ValgrindPath ?? FindValgrind();
        CheckArguments(options.ExtraArguments);
        string temp = Directory.CreateTempSubdirectory("leaktools-valgrind-").FullName;
        try
        {
            return new ValgrindRun(options, valgrind, temp);
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or IOException or UnauthorizedAccessException)
        {
            Directory.Delete(temp, recursive: true);
            throw new LeakToolsException(FailureKind.SystemError, "ValgrindFailed", $"Starting valgrind ({valgrind}) failed: {e.Message}", options.Program, e);
        }
    }

    /// <summary>valgrind on PATH; throws ValgrindNotInstalled (FailureKind.NotSupported) when absent.</summary>
    public static string FindValgrind() =>
        ExecutableLocator.FindOnPath("valgrind") ?? throw new LeakToolsException(FailureKind.NotSupported, "ValgrindNotInstalled",
            "valgrind is not installed (not found on PATH). Install it with 'apt-get install valgrind' (Debian, Ubuntu) or " +
            "'yum install valgrind' / 'dnf install valgrind' (RHEL, Fedora), or import a report made elsewhere with Import-ValgrindLog.");

    private static readonly string[] s_reserved = { "--xml", "--xml-fd", "--xml-file", "--xml-socket", "--log-fd", "--log-file", "--log-socket", "--tool", "--xtree-memory", "--xtree-memory-file" };

    private static void CheckArguments(IReadOnlyList<string> extra)
    {
        foreach (string a in extra)
        {
            string name = a.Split('=', 2)[0];
            if (s_reserved.Contains(name, StringComparer.Ordinal) && a != "--tool=memcheck")
                throw new ArgumentException($"The valgrind option '{a}' is set by Invoke-Valgrind itself (it reads valgrind's XML report); " +
                                            "use -LogPath to keep the XML, or run valgrind directly and read its report with Import-ValgrindLog.");
        }
    }

    private IEnumerable<string> ValgrindArguments()
    {
        yield return "--tool=memcheck";
        yield return "--xml=yes";
        yield return "--xml-file=" + XmlPathOf("%p");
        yield return "--log-file=" + LogPathOf("%p");
        yield return "-v";
        yield return "-v"; // "Reading syms from X / svma, avma": load addresses, for ModuleOffset
        yield return "--child-silent-after-fork=yes"; // a forked child must not write into the same XML
        yield return "--leak-check=" + (_options.LeakCheck == ValgrindLeakCheck.No ? "no" : "full");
        // every kind, so the summary is complete; the cmdlet emits the kinds asked for
        yield return "--show-leak-kinds=all";
        if (_xtree)
        {
            // HEAP SUMMARY figures, which the XML lacks: totals of valgrind's memory xtree
            yield return "--xtree-memory=full";
            yield return "--xtree-memory-file=" + Path.Combine(_tempDir, "xtree.%p.kcg");
        }
        foreach (string s in _options.SuppressionFiles) yield return "--suppressions=" + s;
        if (_options.GenerateSuppressions) yield return "--gen-suppressions=all";
        foreach (string a in _options.ExtraArguments) yield return a;
    }

    /// <summary>Runs until valgrind exits, yielding the program's output and notices as they come,
    /// and stops the program after the duration or when <paramref name="cancel"/> fires.</summary>
    public IEnumerable<ValgrindEvent> Events(CancellationToken cancel)
    {
        int stage = 0; // 0 running, 1 SIGINT sent, 2 SIGTERM sent, 3 SIGKILL sent
        TimeSpan stageAt = TimeSpan.Zero;
        TimeSpan? finishingAt = null;
        while (true)
        {
            while (_events.TryDequeue(out var ev)) yield return ev;
            if (_process.HasExited) break;

            TimeSpan now = _clock.Elapsed;
            bool stopWanted = cancel.IsCancellationRequested || (_options.Duration is TimeSpan d && now >= d);
            if (stopWanted && stage == 0 && XmlShowsFinished())
            {
                // the program already ended by itself and valgrind is checking for leaks: no signal
                (stage, stageAt, finishingAt) = (1, now, now);
                yield return new ValgrindEvent(ValgrindEventKind.Verbose, "The program ended; valgrind is checking for leaks.");
            }
            if (stopWanted && stage == 0)
            {
                string why = cancel.IsCancellationRequested ? "the command was stopped" : $"-Duration {_options.Duration}";
                yield return new ValgrindEvent(ValgrindEventKind.Verbose, $"Stopping the program (pid {ProcessId}) with SIGINT after {now.TotalSeconds:0.0} s ({why}), as Ctrl+C would.");
                Signal(SIGINT);
                (stage, stageAt) = (1, now);
            }
            if (stage >= 1)
            {
                if (finishingAt is null && XmlShowsFinished())
                {
                    finishingAt = now;
                    yield return new ValgrindEvent(ValgrindEventKind.Verbose, "The program ended; valgrind is checking for leaks.");
                }
                if (finishingAt is TimeSpan f)
                {
                    if (cancel.IsCancellationRequested && stage < 3 && now - f >= _options.ReportTimeoutAfterCancel)
                    {
                        yield return new ValgrindEvent(ValgrindEventKind.Warning, $"valgrind's leak check took longer than {_options.ReportTimeoutAfterCancel.TotalSeconds:0} s after the stop; killed it: the report is incomplete.");
                        Signal(SIGKILL);
                        (stage, stageAt) = (3, now);
                    }
                }
                else if (stage < 3 && now - stageAt >= _options.StopGrace)
                {
                    int next = stage == 1 ? SIGTERM : SIGKILL;
                    yield return new ValgrindEvent(ValgrindEventKind.Warning,
                        $"The program did not end within {_options.StopGrace.TotalSeconds:0} s of {_stopSignal}; sending {SignalName(next)}" +
                        (next == SIGKILL ? ": valgrind cannot write its leak report, records found so far are kept." : "."));
                    Signal(next);
                    (stage, stageAt) = (stage + 1, now);
                }
            }
            _process.WaitForExit(50);
        }

        // The pipes close when the last process holding them ends; give stragglers a moment.
        foreach (var ev in StopLeftovers()) yield return ev;
        var drain = Stopwatch.StartNew();
        while ((!_stdoutClosed || !_stderrClosed) && drain.Elapsed < TimeSpan.FromSeconds(5)) Thread.Sleep(20);
        while (_events.TryDequeue(out var ev)) yield return ev;
        _finished = true;
    }

    /// <summary>Parses what valgrind wrote. Throws ValgrindFailed when it wrote no report at all.</summary>
    public ValgrindRunResult Result(string? reportPath = null)
    {
        if (!_finished) throw new InvalidOperationException("Result() needs Events() to have run to the end.");
        int exitCode = _process.ExitCode;
        var info = new FileInfo(XmlPath);
        if (!info.Exists || info.Length == 0)
        {
            string tail;
            lock (_stderrTail) tail = string.Join(Environment.NewLine, _stderrTail);
            throw new LeakToolsException(FailureKind.SystemError, "ValgrindFailed",
                $"valgrind exited with code {exitCode} without writing a report." + (tail.Length > 0 ? $" It said:{Environment.NewLine}{tail}" : ""),
                _options.Program);
        }

        ValgrindReport report = ReadReport(XmlPath, LogPath, reportPath);
        report.Summary.ExitCode = exitCode;
        if (_options.LeakCheck == ValgrindLeakCheck.No) report.WithoutLeaks(); // valgrind's XML mode checks anyway
        if (_xtree) ReadXtreeTotals(report.Summary);

        // The signal LeakTools sent to stop the program is not a finding.
        if (_stopSignal is not null && report.Summary.Signal == _stopSignal)
            report.Records.RemoveAll(r => r.Kind == LeakKind.FatalSignal);

        // programs it started, when valgrind followed them (--trace-children=yes)
        var children = new List<ValgrindReport>();
        foreach (string xml in Directory.GetFiles(_tempDir, "valgrind.*.xml").Order(StringComparer.Ordinal))
        {
            if (xml == XmlPath || new FileInfo(xml).Length == 0) continue;
            ValgrindReport child = ReadReport(xml, Path.ChangeExtension(xml, ".log"), null);
            if (_options.LeakCheck == ValgrindLeakCheck.No) child.WithoutLeaks();
            children.Add(child);
        }
        return new ValgrindRunResult { Report = report, ChildReports = children, ExitCode = exitCode, StopSignal = _stopSignal, RunTime = _clock.Elapsed };
    }

    private static ValgrindReport ReadReport(string xmlPath, string logPath, string? reportPath)
    {
        ModuleLoadMap loads = File.Exists(logPath) ? ModuleLoadMap.FromLog(File.ReadLines(logPath)) : ModuleLoadMap.Empty;
        using var xml = File.OpenRead(xmlPath);
        return ValgrindXmlParser.Parse(xml, reportPath, loads);
    }

    /// <summary>valgrind's own messages from its log ("==PID== Warning: ..."), for -Verbose.</summary>
    public IEnumerable<ValgrindEvent> LogMessages()
    {
        if (!File.Exists(LogPath)) yield break;
        foreach (string line in File.ReadLines(LogPath))
        {
            if (!ValgrindTextParser.TrySplitPrefix(line, out char kind, out _, out string content)) continue;
            if (kind == '*') yield return new ValgrindEvent(ValgrindEventKind.Warning, "valgrind: " + content.Trim());
            else if (kind == '=' && content.StartsWith("Warning:", StringComparison.Ordinal)) // not -v -v's "WARNING: new redirection"
                yield return new ValgrindEvent(ValgrindEventKind.Verbose, "valgrind: " + content.Trim());
        }
    }

    /// <summary>Copies valgrind's raw XML to <paramref name="destination"/> (-LogPath).</summary>
    public void KeepXml(string destination)
    {
        if (File.Exists(XmlPath)) File.Copy(XmlPath, destination, overwrite: true);
    }

    [GeneratedRegex(@"^events:\s*(?<names>.+)$", RegexOptions.Multiline | RegexOptions.CultureInvariant)]
    private static partial Regex XtreeEvents();

    [GeneratedRegex(@"^totals:\s*(?<values>.+)$", RegexOptions.Multiline | RegexOptions.CultureInvariant)]
    private static partial Regex XtreeTotals();

    // "events: curB curBk totB totBk totFdB totFdBk" / "totals: 512 1 1024 2 512 1"
    private void ReadXtreeTotals(LeakSummary s)
    {
        string file = Path.Combine(_tempDir, $"xtree.{ProcessId}.kcg");
        if (!File.Exists(file)) return;
        string text = File.ReadAllText(file);
        Match names = XtreeEvents().Match(text), values = XtreeTotals().Match(text);
        if (!names.Success || !values.Success) return;
        var totals = new Dictionary<string, long>(StringComparer.Ordinal);
        string[] n = names.Groups["names"].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        string[] v = values.Groups["values"].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        for (int i = 0; i < Math.Min(n.Length, v.Length); i++)
        {
            if (long.TryParse(v[i], NumberStyles.None, CultureInfo.InvariantCulture, out long x)) totals[n[i]] = x;
        }
        long? Get(string key) => totals.TryGetValue(key, out long x) ? x : null;
        s.InUseBytes = Get("curB");
        s.InUseBlocks = Get("curBk");
        s.BytesAllocated = Get("totB");
        s.Allocs = Get("totBk");
        s.Frees = Get("totFdBk");
        // in use at exit = definitely + indirectly + possibly lost + still reachable + suppressed
        if (s.InUseBytes is long inUse && s.DefinitelyLost is long dl && s.IndirectlyLost is long il && s.PossiblyLost is long pl && s.StillReachable is long sr && s.Complete)
        {
            s.Suppressed = Math.Max(0, inUse - dl - il - pl - sr);
            s.SuppressedBlocks = Math.Max(0, (s.InUseBlocks ?? 0) - (s.DefinitelyLostBlocks ?? 0) - (s.IndirectlyLostBlocks ?? 0) - (s.PossiblyLostBlocks ?? 0) - (s.StillReachableBlocks ?? 0));
        }
    }

    private bool XmlShowsFinished()
    {
        ReadOnlySpan<byte> marker = "<state>FINISHED</state>"u8;
        try
        {
            using var f = new FileStream(XmlPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            if (f.Length <= _xmlScanned) return false;
            // re-read a little overlap so a marker split between two reads is still seen
            long from = Math.Max(0, _xmlScanned - marker.Length);
            var chunk = new byte[f.Length - from];
            f.Position = from;
            int n = f.ReadAtLeast(chunk, chunk.Length, throwOnEndOfStream: false);
            _xmlScanned = from + n;
            return chunk.AsSpan(0, n).IndexOf(marker) >= 0;
        }
        catch (IOException)
        {
            return false;
        }
    }

    private void Signal(int signal)
    {
        _stopSignal = SignalName(signal);
        if (_ownGroup && Libc.Kill(-ProcessId, signal) == 0) return;
        Libc.Kill(ProcessId, signal);
    }

    /// <summary>Processes the program forked (still under valgrind) that outlive it: SIGTERM, then SIGKILL.</summary>
    private IEnumerable<ValgrindEvent> StopLeftovers()
    {
        if (!_ownGroup || Libc.Kill(-ProcessId, 0) != 0) yield break;
        yield return new ValgrindEvent(ValgrindEventKind.Warning, $"The program left processes running in its process group {ProcessId}; stopping them.");
        Libc.Kill(-ProcessId, SIGTERM);
        var wait = Stopwatch.StartNew();
        while (Libc.Kill(-ProcessId, 0) == 0 && wait.Elapsed < TimeSpan.FromSeconds(3)) Thread.Sleep(50);
        if (Libc.Kill(-ProcessId, 0) == 0) Libc.Kill(-ProcessId, SIGKILL);
    }

    private static string SignalName(int signal) => signal switch { SIGINT => "SIGINT", SIGTERM => "SIGTERM", SIGKILL => "SIGKILL", _ => $"signal {signal}" };

    private static Version? VersionOf(string valgrind)
    {
        if (s_versionOf == valgrind) return s_version;
        Version? version = null;
        try
        {
            var psi = new ProcessStartInfo(valgrind, "--version") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            using var p = Process.Start(psi)!;
            string text = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            Match m = Regex.Match(text, @"(\d+)\.(\d+)");
            if (m.Success) version = new Version(int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture));
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or IOException)
        {
        }
        (s_versionOf, s_version) = (valgrind, version);
        return version;
    }

    private static string Quote(string s) => s.Length > 0 && s.All(c => char.IsLetterOrDigit(c) || "-_./=:,+%@".Contains(c)) ? s : "'" + s.Replace("'", "'\\''") + "'";

    /// <summary>Stops whatever still runs (SIGKILL to the group) and removes the temporary folder.</summary>
    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
            {
                Signal(SIGKILL);
                _process.WaitForExit(5000);
            }
            if (_ownGroup && Libc.Kill(-ProcessId, 0) == 0) Libc.Kill(-ProcessId, SIGKILL);
        }
        catch (InvalidOperationException)
        {
        }
        try { _process.StandardInput.Close(); } catch (Exception e) when (e is IOException or InvalidOperationException) { }
        _process.Dispose();
        try
        {
            Directory.Delete(_tempDir, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }
}
