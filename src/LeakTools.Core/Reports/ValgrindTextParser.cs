using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace LeakTools.Core.Reports;

/// <summary>Reads valgrind's plain text logs (--log-file, or stderr saved to a file): "==PID=="
/// lines, headings and their "at"/"by" frames with "(file:line)" or "(in /lib/...)", auxiliary
/// lines, "Thread N name:" headers, HEAP/LEAK/ERROR SUMMARY, the -s error list, generated
/// suppressions, and with -v -v the "--PID--" load addresses. Lines of other processes (children
/// traced with --trace-children) make reports of their own, one per pid.</summary>
public static partial class ValgrindTextParser
{
    // Anchored nowhere: program output without a newline or a terminal's "^C" may precede it.
    [GeneratedRegex(@"(?<![=*-])(?<p>==|--|\*\*)(?<pid>\d+)\k<p>(?: (?<c>.*))?$", RegexOptions.CultureInvariant)]
    private static partial Regex Prefix();

    [GeneratedRegex(@"^\d\d:\d\d:\d\d:\d\d\.\d\d\d ", RegexOptions.CultureInvariant)]
    private static partial Regex TimeStamp();

    [GeneratedRegex(@"^\s+(?:at|by) 0x(?<ip>[0-9A-Fa-f]+): (?<rest>.*)$", RegexOptions.CultureInvariant)]
    private static partial Regex FrameLine();

    [GeneratedRegex(@"^Thread (?<id>\d+)(?: (?<name>.+))?:$", RegexOptions.CultureInvariant)]
    private static partial Regex ThreadHeader();

    [GeneratedRegex(@"^(?<n>[\d,]+) errors? in context \d+ of \d+:$", RegexOptions.CultureInvariant)]
    private static partial Regex ContextHeader();

    [GeneratedRegex(@"^ERROR SUMMARY: (?<e>[\d,]+) errors? from (?<c>[\d,]+) contexts? \(suppressed: (?<se>[\d,]+) from (?<sc>[\d,]+)\)", RegexOptions.CultureInvariant)]
    private static partial Regex ErrorSummary();

    [GeneratedRegex(@"^\s*(?<name>in use at exit|definitely lost|indirectly lost|possibly lost|still reachable|suppressed): (?<bytes>[\d,]+)(?: \([+-][\d,]+\))? bytes in (?<blocks>[\d,]+)(?: \([+-][\d,]+\))? blocks", RegexOptions.CultureInvariant)]
    private static partial Regex BytesInBlocks();

    [GeneratedRegex(@"^\s*total heap usage: (?<allocs>[\d,]+) allocs, (?<frees>[\d,]+) frees, (?<bytes>[\d,]+) bytes allocated", RegexOptions.CultureInvariant)]
    private static partial Regex HeapUsage();

    [GeneratedRegex(@"^Process terminating with default action of signal (?<no>\d+) \((?<name>\w+)\)", RegexOptions.CultureInvariant)]
    private static partial Regex FatalSignal();

    [GeneratedRegex(@"^used_suppression:\s+(?<n>\d+) (?<name>.+?) \S+:\d+(?: suppressed: .*)?$", RegexOptions.CultureInvariant)]
    private static partial Regex UsedSuppression();

    [GeneratedRegex(@"^(?<tool>\w+), a .+$", RegexOptions.CultureInvariant)]
    private static partial Regex ToolLine();

    /// <summary>Splits "==771== text" into its kind ('=' user message, '-' commentary, '*' fatal), pid and text.</summary>
    public static bool TrySplitPrefix(string line, out char kind, out int pid, out string content)
    {
        // the common case, "==123== text" at the start of the line, without the regex
        if (!TrySplitAt(line, 0, out kind, out pid, out content))
        {
            Match m = Prefix().Match(line);
            if (!m.Success)
            {
                (kind, pid, content) = ('\0', 0, "");
                return false;
            }
            kind = m.Groups["p"].Value[0];
            pid = int.Parse(m.Groups["pid"].Value, NumberStyles.None, CultureInfo.InvariantCulture);
            content = m.Groups["c"].Value;
        }
        if (content.Length > 16 && char.IsAsciiDigit(content[0]) && content[2] == ':')
        {
            Match ts = TimeStamp().Match(content);
            if (ts.Success) content = content[ts.Length..];
        }
        return true;
    }

    private static bool TrySplitAt(string line, int at, out char kind, out int pid, out string content)
    {
        (kind, pid, content) = ('\0', 0, "");
        if (line.Length < at + 5) return false;
        char c = line[at];
        if (c is not ('=' or '-' or '*') || line[at + 1] != c) return false;
        int i = at + 2, value = 0;
        while (i < line.Length && char.IsAsciiDigit(line[i]) && i - at < 12) value = value * 10 + (line[i++] - '0');
        if (i == at + 2 || i + 1 >= line.Length || line[i] != c || line[i + 1] != c) return false;
        i += 2;
        if (i < line.Length && line[i] != ' ') return false;
        (kind, pid, content) = (c, value, i + 1 < line.Length ? line[(i + 1)..] : "");
        return true;
    }

    /// <summary>Parses a text log; one report per process id, in order of appearance. Throws
    /// NotValgrindReport when no line carries valgrind's "==PID==" prefix.</summary>
    public static List<ValgrindReport> Parse(TextReader reader, string? path = null)
    {
        var states = new Dictionary<int, State>();
        var order = new List<State>();
        var loads = new ModuleLoadMap();
        State? last = null;
        StringBuilder? suppression = null;
        string? line;
        int lineNo = 0;
        while ((line = reader.ReadLine()) is not null)
        {
            // valgrind writes its preamble first; give up on a long file that never looks like a log
            if (++lineNo > 10_000 && order.Count == 0) break;
            if (!TrySplitPrefix(line, out char kind, out int pid, out string content))
            {
                // --gen-suppressions blocks are printed without the prefix, after their error
                if (suppression is not null)
                {
                    suppression.Append('\n').Append(line);
                    if (line.StartsWith('}'))
                    {
                        if (last?.LastFinished is LeakRecord r) r.Suppression = suppression.ToString();
                        suppression = null;
                    }
                }
                else if (line == "{" && last?.LastFinished is not null) suppression = new StringBuilder(line);
                continue;
            }
            suppression = null;
            if (!states.TryGetValue(pid, out State? state))
            {
                states[pid] = state = new State(pid);
                order.Add(state);
            }
            last = state;
            if (kind == '-') state.Commentary(content, loads);
            else state.Line(content);
        }
        if (order.Count == 0)
            throw new LeakToolsException(FailureKind.InvalidData, "NotValgrindReport",
                $"{path ?? "The input"} is not a valgrind log: no line starts with valgrind's \"==PID==\" prefix.", path);

        var reports = new List<ValgrindReport>();
        foreach (State s in order)
        {
            s.FinishRecord();
            if (!s.SawErrorSummary)
            {
                s.Report.Summary.Complete = false;
                s.Report.Warnings.Add($"The valgrind log {path ?? ""} of process {s.Pid} has no ERROR SUMMARY: it was cut off or the " +
                                      $"program still ran; {s.Report.Records.Count} record(s) read.");
            }
            s.Report.Complete(loads, path);
            reports.Add(s.Report);
        }
        return reports;
    }

    /// <summary>Parses one frame line's text after "at 0x...: ".</summary>
    internal static StackFrame ParseFrame(ulong ip, string rest)
    {
        var frame = new StackFrame { Address = ip };
        string function = rest.TrimEnd();
        // The location is the last parenthesised group: "(file.c:12)" or "(in /lib/x.so)". Function
        // names have parentheses of their own ("operator()(char*) const", "(below main)").
        if (function.EndsWith(')'))
        {
            int depth = 0, open = -1;
            for (int i = function.Length - 1; i >= 0; i--)
            {
                if (function[i] == ')') depth++;
                else if (function[i] == '(' && --depth == 0)
                {
                    open = i;
                    break;
                }
            }
            if (open > 0 && function[open - 1] == ' ')
            {
                string location = function[(open + 1)..^1];
                int colon = location.LastIndexOf(':');
                if (location.StartsWith("in ", StringComparison.Ordinal))
                {
                    frame.Module = location[3..];
                    function = function[..(open - 1)];
                }
                else if (colon > 0 && int.TryParse(location[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out int lineNo))
                {
                    frame.File = location[..colon];
                    frame.Line = lineNo;
                    function = function[..(open - 1)];
                }
            }
        }
        frame.Function = function is "???" or "" ? null : function;
        return frame;
    }

    private enum Section { None, Heap, Leak }

    /// <summary>Parsing state of one process's lines.</summary>
    private sealed class State(int pid)
    {
        public int Pid { get; } = pid;
        public ValgrindReport Report { get; } = new() { Summary = { ProcessId = pid } };
        public LeakRecord? LastFinished { get; private set; }
        public bool SawErrorSummary { get; private set; }

        private LeakRecord? _record;
        private bool _knownHeading;
        private readonly List<StackFrame> _frames = new();
        private readonly List<LeakRecordDetail> _details = new();
        private List<StackFrame>? _detailFrames;
        private bool _lastWasAux;
        private int? _threadId = 1; // valgrind names a thread only when it differs from the last one printed, starting from 1
        private string? _threadName;
        private long? _repeatCount;
        private Section _section;
        private readonly List<KeyValuePair<string, long>> _suppressions = new();

        public void Commentary(string content, ModuleLoadMap loads)
        {
            loads.AddCommentaryLine(content);
            Match m = UsedSuppression().Match(content.Trim());
            if (m.Success)
            {
                _suppressions.Add(new(m.Groups["name"].Value, long.Parse(m.Groups["n"].Value, CultureInfo.InvariantCulture)));
                Report.Summary.Suppressions = new NamedValues(_suppressions);
            }
        }

        public void Line(string c)
        {
            if (string.IsNullOrWhiteSpace(c))
            {
                FinishRecord();
                _section = Section.None;
                return;
            }
            Match m;
            if (c.Length > 8 && c[0] == ' ' && IsFrameLine(c) && (m = FrameLine().Match(c)).Success)
            {
                if (_record is null) return;
                ValgrindKinds.TryHex(m.Groups["ip"].Value, out ulong ip);
                (_detailFrames ?? _frames).Add(ParseFrame(ip, m.Groups["rest"].Value));
                _lastWasAux = false;
                return;
            }
            if (_section != Section.None && _record is null && c[0] == ' ' && SummaryLine(c)) return;
            if (_record is not null && c.Length > 1 && c[0] == ' ' && c[1] != ' ')
            {
                Auxiliary(c.Trim());
                return;
            }
            if (c[0] == ' ') return;
            Heading(c.TrimEnd());
        }

        private static bool IsFrameLine(string c)
        {
            string t = c.TrimStart();
            return t.StartsWith("at 0x", StringComparison.Ordinal) || t.StartsWith("by 0x", StringComparison.Ordinal);
        }

        private void Auxiliary(string text)
        {
            LeakRecordDetail? previous = _details.Count > 0 ? _details[^1] : null;
            if (_lastWasAux && previous is not null && (_detailFrames is null || _detailFrames.Count == 0))
            {
                previous.Text += " " + text; // a message wrapped over several lines
                return;
            }
            if (_detailFrames is not null) _details[^1].Frames = _detailFrames.ToArray();
            _details.Add(new LeakRecordDetail { Text = text });
            // The stack after an auxiliary line is the record's own when it has none yet
            // ("Process terminating ... / Access not within mapped region ... / at 0x...").
            _detailFrames = _frames.Count == 0 ? null : new List<StackFrame>();
            _lastWasAux = true;
        }

        private bool SummaryLine(string c)
        {
            var s = Report.Summary;
            Match m = BytesInBlocks().Match(c);
            if (m.Success)
            {
                long bytes = ValgrindKinds.Number(m.Groups["bytes"].Value), blocks = ValgrindKinds.Number(m.Groups["blocks"].Value);
                switch (m.Groups["name"].Value)
                {
                    case "in use at exit": (s.InUseBytes, s.InUseBlocks) = (bytes, blocks); break;
                    case "definitely lost": (s.DefinitelyLost, s.DefinitelyLostBlocks) = (bytes, blocks); break;
                    case "indirectly lost": (s.IndirectlyLost, s.IndirectlyLostBlocks) = (bytes, blocks); break;
                    case "possibly lost": (s.PossiblyLost, s.PossiblyLostBlocks) = (bytes, blocks); break;
                    case "still reachable": (s.StillReachable, s.StillReachableBlocks) = (bytes, blocks); break;
                    case "suppressed": (s.Suppressed, s.SuppressedBlocks) = (bytes, blocks); break;
                }
                return true;
            }
            m = HeapUsage().Match(c);
            if (m.Success)
            {
                s.Allocs = ValgrindKinds.Number(m.Groups["allocs"].Value);
                s.Frees = ValgrindKinds.Number(m.Groups["frees"].Value);
                s.BytesAllocated = ValgrindKinds.Number(m.Groups["bytes"].Value);
                return true;
            }
            return true; // "of which reachable via heuristic:" and its lines
        }

        private void Heading(string c)
        {
            FinishRecord();
            var s = Report.Summary;
            Match m;
            if ((m = ThreadHeader().Match(c)).Success)
            {
                _threadId = int.Parse(m.Groups["id"].Value, CultureInfo.InvariantCulture);
                _threadName = m.Groups["name"].Success ? m.Groups["name"].Value : null;
            }
            else if ((m = ContextHeader().Match(c)).Success) _repeatCount = ValgrindKinds.Number(m.Groups["n"].Value);
            else if (c == "HEAP SUMMARY:") _section = Section.Heap;
            else if (c == "LEAK SUMMARY:") _section = Section.Leak;
            else if (c.StartsWith("All heap blocks were freed", StringComparison.Ordinal))
            {
                (s.DefinitelyLost, s.DefinitelyLostBlocks, s.IndirectlyLost, s.IndirectlyLostBlocks) = (0, 0, 0, 0);
                (s.PossiblyLost, s.PossiblyLostBlocks, s.StillReachable, s.StillReachableBlocks, s.Suppressed, s.SuppressedBlocks) = (0, 0, 0, 0, 0, 0);
            }
            else if ((m = ErrorSummary().Match(c)).Success)
            {
                SawErrorSummary = true;
                s.Errors = ValgrindKinds.Number(m.Groups["e"].Value);
                s.ErrorContexts = ValgrindKinds.Number(m.Groups["c"].Value);
                s.SuppressedErrors = ValgrindKinds.Number(m.Groups["se"].Value);
                s.SuppressedContexts = ValgrindKinds.Number(m.Groups["sc"].Value);
            }
            else if (c.StartsWith("Command: ", StringComparison.Ordinal)) s.Command ??= c["Command: ".Length..];
            else if (s.Tool is null && (m = ToolLine().Match(c)).Success && c.EndsWith("detector", StringComparison.Ordinal)) s.Tool = m.Groups["tool"].Value.ToLowerInvariant();
            else
            {
                var record = new LeakRecord { Message = c };
                if ((m = FatalSignal().Match(c)).Success)
                {
                    (record.Kind, record.ValgrindKind) = (LeakKind.FatalSignal, "fatal_signal");
                    s.Signal = m.Groups["name"].Value;
                    _knownHeading = true;
                }
                else if (ValgrindKinds.TryParseLossRecord(c, record)) _knownHeading = true;
                else if (ValgrindKinds.XmlKindOfHeading(c) is string xmlKind)
                {
                    (record.Kind, record.ValgrindKind) = (ValgrindKinds.FromXml(xmlKind), xmlKind);
                    _knownHeading = true;
                }
                else _knownHeading = false; // kept only if a stack follows: an error kind newer than this parser
                if (!ValgrindKinds.IsLeak(record.Kind)) (record.ThreadId, record.ThreadName) = (_threadId, _threadName);
                _record = record;
            }
        }

        public void FinishRecord()
        {
            if (_record is null) return;
            LeakRecord r = _record;
            _record = null;
            if (_detailFrames is not null && _details.Count > 0) _details[^1].Frames = _detailFrames.ToArray();
            r.Frames = _frames.ToArray();
            r.Auxiliary = _details.ToArray();
            _frames.Clear();
            _details.Clear();
            _detailFrames = null;
            _lastWasAux = false;
            long? repeat = _repeatCount;
            _repeatCount = null;
            if (!_knownHeading && r.Frames.Length == 0) return; // a message line, not a finding
            if (repeat is not null)
            {
                // the -s list at the end repeats each error with its count
                LeakRecord? original = Report.Records.FirstOrDefault(x => x.Count is null && x.Message == r.Message && SameStack(x.Frames, r.Frames));
                if (original is not null)
                {
                    original.Count = repeat;
                    return;
                }
                r.Count = repeat;
            }
            Report.Records.Add(r);
            LastFinished = r;
        }

        private static bool SameStack(StackFrame[] a, StackFrame[] b) =>
            a.Length == b.Length && a.Zip(b).All(p => p.First.Address == p.Second.Address);
    }
}
