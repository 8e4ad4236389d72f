using System.Globalization;
using System.Xml;
using System.Xml.Linq;

namespace LeakTools.Core.Reports;

/// <summary>Reads valgrind's --xml=yes output (protocol 4, memcheck; older protocols where they
/// agree): every &lt;error&gt; with &lt;what&gt; or &lt;xwhat&gt;, its stacks and auxiliary lines,
/// &lt;fatal_signal&gt;, &lt;errorcounts&gt;, &lt;suppcounts&gt;, &lt;status&gt;. A file that ends
/// early (valgrind killed, still running, disk full) yields the records read so far and a warning.</summary>
public static class ValgrindXmlParser
{
    private static readonly HashSet<string> s_defaultShown = new(StringComparer.Ordinal) { "definite", "possible" };

    public static ValgrindReport Parse(Stream stream, string? path = null, ModuleLoadMap? loads = null)
    {
        var report = new ValgrindReport();
        var summary = report.Summary;
        var counts = new Dictionary<string, long>(StringComparer.Ordinal);
        var uniques = new List<(string Unique, LeakRecord Record)>();
        var suppressions = new List<KeyValuePair<string, long>>();
        var args = new List<string>();
        bool sawRoot = false, sawErrorCounts = false, sawSuppCounts = false;
        string where = path ?? "the valgrind XML report";

        var settings = new XmlReaderSettings { DtdProcessing = DtdProcessing.Ignore, IgnoreComments = true, XmlResolver = null };
        try
        {
            using var reader = XmlReader.Create(stream, settings);
            reader.MoveToContent();
            if (reader.NodeType != XmlNodeType.Element || reader.LocalName != "valgrindoutput")
                throw NotValgrind(path, $"its root element is <{reader.LocalName}>, not <valgrindoutput>");
            sawRoot = true;
            reader.Read();
            while (!reader.EOF)
            {
                if (reader.NodeType != XmlNodeType.Element)
                {
                    reader.Read();
                    continue;
                }
                var e = (XElement)XNode.ReadFrom(reader);
                switch (e.Name.LocalName)
                {
                    case "protocoltool":
                    case "tool":
                        summary.Tool = e.Value.Trim();
                        break;
                    case "pid":
                        if (int.TryParse(e.Value.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int pid)) summary.ProcessId = pid;
                        break;
                    case "preamble":
                        foreach (var line in e.Elements("line"))
                        {
                            string text = line.Value;
                            if (text.StartsWith("Command: ", StringComparison.Ordinal)) summary.Command ??= text["Command: ".Length..];
                        }
                        break;
                    case "args":
                        ReadArgs(e, summary, args);
                        break;
                    case "status":
                        if (ParseElapsed(e.Element("time")?.Value) is TimeSpan elapsed) summary.Elapsed = elapsed;
                        break;
                    case "error":
                        LeakRecord record = ReadError(e, report);
                        report.Records.Add(record);
                        if (e.Element("unique")?.Value.Trim() is string unique) uniques.Add((unique, record));
                        break;
                    case "fatal_signal":
                        report.Records.Add(ReadFatalSignal(e, summary));
                        break;
                    case "errorcounts":
                        sawErrorCounts = true;
                        foreach (var pair in e.Elements("pair"))
                        {
                            if (ValgrindKinds.TryNumber(pair.Element("count")?.Value, out long n) && pair.Element("unique")?.Value.Trim() is string u) counts[u] = n;
                        }
                        break;
                    case "suppcounts":
                        sawSuppCounts = true;
                        foreach (var pair in e.Elements("pair"))
                        {
                            if (ValgrindKinds.TryNumber(pair.Element("count")?.Value, out long n))
                                suppressions.Add(new(pair.Element("name")?.Value.Trim() ?? "", n));
                        }
                        break;
                }
            }
        }
        catch (XmlException ex)
        {
            if (!sawRoot) throw NotValgrind(path, ex.Message);
            summary.Complete = false;
            report.Warnings.Add($"{where} ends early ({ex.Message}): {report.Records.Count} record(s) read; the summary lacks what was not written " +
                                "(valgrind killed or still running?).");
        }

        foreach (var (unique, record) in uniques)
        {
            if (counts.TryGetValue(unique, out long n)) record.Count = n;
        }
        if (sawSuppCounts)
        {
            summary.Suppressions = new NamedValues(suppressions);
            summary.SuppressedErrors = suppressions.Sum(s => s.Value);
            summary.SuppressedContexts = suppressions.Count;
        }
        if (sawErrorCounts) Summarize(report, counts, args);
        report.Complete(loads ?? ModuleLoadMap.Empty, path);
        return report;
    }

    /// <summary>LEAK SUMMARY and ERROR SUMMARY figures from the records, as valgrind's text output
    /// counts them: leak figures only for the kinds the run showed (--show-leak-kinds), direct bytes
    /// only; leak records of --errors-for-leak-kinds count as errors.</summary>
    private static void Summarize(ValgrindReport report, Dictionary<string, long> counts, List<string> args)
    {
        var summary = report.Summary;
        string leakCheck = "summary";
        HashSet<string> shown = new(s_defaultShown), errorsFor = new(s_defaultShown);
        foreach (string a in args)
        {
            if (Option(a, "--leak-check") is string lc) leakCheck = lc;
            else if (Option(a, "--show-leak-kinds") is string sk) shown = LeakKindSet(sk);
            else if (Option(a, "--errors-for-leak-kinds") is string ek) errorsFor = LeakKindSet(ek);
            else if (Option(a, "--show-reachable") is string sr) shown = sr == "yes" ? LeakKindSet("all") : new(s_defaultShown);
            else if (Option(a, "--show-possibly-lost") == "no") shown.Remove("possible");
        }

        var leaks = report.Records.Where(r => ValgrindKinds.IsLeak(r.Kind)).ToList();
        long leakErrors = leaks.Count(r => errorsFor.Contains(ShortName(r.Kind)));
        report.LeakErrors = leakErrors;
        summary.Errors = counts.Values.Sum() + leakErrors;
        summary.ErrorContexts = counts.Count + leakErrors;
        // valgrind 3.19 checks fully in XML mode whatever --leak-check says; older ones may not
        if (leakCheck is not ("full" or "yes") && leaks.Count == 0) return;

        void Fill(LeakKind kind, Action<long?, long?> set)
        {
            if (!shown.Contains(ShortName(kind))) return;
            var of = leaks.Where(r => r.Kind == kind).ToList();
            set(of.Sum(r => (r.Bytes ?? 0) - (r.IndirectBytes ?? 0)), of.Sum(r => r.Blocks ?? 0));
        }
        Fill(LeakKind.DefinitelyLost, (b, n) => (summary.DefinitelyLost, summary.DefinitelyLostBlocks) = (b, n));
        Fill(LeakKind.IndirectlyLost, (b, n) => (summary.IndirectlyLost, summary.IndirectlyLostBlocks) = (b, n));
        Fill(LeakKind.PossiblyLost, (b, n) => (summary.PossiblyLost, summary.PossiblyLostBlocks) = (b, n));
        Fill(LeakKind.StillReachable, (b, n) => (summary.StillReachable, summary.StillReachableBlocks) = (b, n));
    }

    private static string ShortName(LeakKind kind) => kind switch
    {
        LeakKind.DefinitelyLost => "definite",
        LeakKind.IndirectlyLost => "indirect",
        LeakKind.PossiblyLost => "possible",
        _ => "reachable",
    };

    private static HashSet<string> LeakKindSet(string value)
    {
        var set = new HashSet<string>(StringComparer.Ordinal);
        foreach (string k in value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (k == "all") set.UnionWith(new[] { "definite", "indirect", "possible", "reachable" });
            else if (k != "none") set.Add(k);
        }
        return set;
    }

    private static string? Option(string arg, string name) =>
        arg.StartsWith(name + "=", StringComparison.Ordinal) ? arg[(name.Length + 1)..] : null;

    private static void ReadArgs(XElement e, LeakSummary summary, List<string> args)
    {
        if (e.Element("vargv") is XElement vargv) args.AddRange(vargv.Elements("arg").Select(a => a.Value));
        if (e.Element("argv") is XElement argv)
        {
            var words = argv.Elements().Where(x => x.Name.LocalName is "exe" or "arg").Select(x => x.Value).ToList();
            if (words.Count > 0) summary.Command = string.Join(' ', words);
        }
    }

    // "00:00:00:02.003 " is days:hours:minutes:seconds.milliseconds
    private static TimeSpan? ParseElapsed(string? text)
    {
        if (text is null) return null;
        string[] p = text.Trim().Split(':');
        if (p.Length != 4) return null;
        if (!int.TryParse(p[0], NumberStyles.None, CultureInfo.InvariantCulture, out int d) ||
            !int.TryParse(p[1], NumberStyles.None, CultureInfo.InvariantCulture, out int h) ||
            !int.TryParse(p[2], NumberStyles.None, CultureInfo.InvariantCulture, out int m) ||
            !double.TryParse(p[3], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double s)) return null;
        return new TimeSpan(d, h, m, 0) + TimeSpan.FromSeconds(s);
    }

    private static LeakRecord ReadError(XElement e, ValgrindReport report)
    {
        string? kind = e.Element("kind")?.Value.Trim();
        var record = new LeakRecord { ValgrindKind = kind, Kind = ValgrindKinds.FromXml(kind) };
        if (record.Kind == LeakKind.Unknown && kind is not null && !report.Warnings.Any(w => w.Contains($"'{kind}'", StringComparison.Ordinal)))
            report.Warnings.Add($"Valgrind reported findings of kind '{kind}', which LeakTools does not know; they have Kind Unknown and ValgrindKind '{kind}'.");
        var details = new List<LeakRecordDetail>();
        bool leak = ValgrindKinds.IsLeak(record.Kind);
        foreach (var child in e.Elements())
        {
            switch (child.Name.LocalName)
            {
                case "tid":
                    if (!leak && int.TryParse(child.Value.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int tid)) record.ThreadId = tid;
                    break;
                case "threadname":
                    if (!leak) record.ThreadName = child.Value.Trim();
                    break;
                case "what":
                case "xwhat":
                    // protocol 4 gives leaks an <xwhat> with figures; protocol 3 put them in <what>
                    record.Message = (child.Name.LocalName == "xwhat" ? child.Element("text")?.Value : child.Value)?.Trim() ?? "";
                    ReadLossFigures(record, child);
                    break;
                case "auxwhat":
                    details.Add(new LeakRecordDetail { Text = child.Value.Trim() });
                    break;
                case "xauxwhat":
                    details.Add(new LeakRecordDetail { Text = child.Element("text")?.Value.Trim() ?? child.Value.Trim() });
                    break;
                case "stack":
                    StackFrame[] frames = ReadStack(child);
                    if (record.Frames.Length == 0 && details.Count == 0) record.Frames = frames;
                    else if (details.Count > 0 && details[^1].Frames.Length == 0) details[^1].Frames = frames;
                    else details.Add(new LeakRecordDetail { Frames = frames });
                    break;
                case "suppression":
                    record.Suppression = child.Element("rawtext")?.Value.Trim();
                    break;
            }
        }
        record.Auxiliary = details.ToArray();
        return record;
    }

    private static void ReadLossFigures(LeakRecord record, XElement what)
    {
        var parsed = new LeakRecord();
        if (!ValgrindKinds.TryParseLossRecord(record.Message, parsed)) return;
        if (record.Kind == LeakKind.Unknown) (record.Kind, record.ValgrindKind) = (parsed.Kind, parsed.ValgrindKind);
        record.Bytes = parsed.Bytes;
        record.IndirectBytes = parsed.IndirectBytes;
        record.Blocks = parsed.Blocks;
        record.LossRecord = parsed.LossRecord;
        record.LossRecordCount = parsed.LossRecordCount;
        if (ValgrindKinds.TryNumber(what.Element("leakedbytes")?.Value, out long bytes)) record.Bytes = bytes;
        if (ValgrindKinds.TryNumber(what.Element("leakedblocks")?.Value, out long blocks)) record.Blocks = blocks;
    }

    private static LeakRecord ReadFatalSignal(XElement e, LeakSummary summary)
    {
        string signo = e.Element("signo")?.Value.Trim() ?? "?";
        string? name = e.Element("signame")?.Value.Trim();
        summary.Signal = name ?? $"signal {signo}";
        var record = new LeakRecord
        {
            Kind = LeakKind.FatalSignal,
            ValgrindKind = "fatal_signal",
            Message = $"Process terminating with default action of signal {signo}" + (name is null ? "" : $" ({name})"),
        };
        if (int.TryParse(e.Element("tid")?.Value.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int tid)) record.ThreadId = tid;
        record.ThreadName = e.Element("threadname")?.Value.Trim();
        if (e.Element("event")?.Value.Trim() is string ev)
        {
            string at = e.Element("siaddr")?.Value.Trim() is string addr ? $" at address {addr}" : "";
            record.Auxiliary = new[] { new LeakRecordDetail { Text = ev + at } };
        }
        if (e.Element("stack") is XElement stack) record.Frames = ReadStack(stack);
        return record;
    }

    private static StackFrame[] ReadStack(XElement stack)
    {
        var frames = new List<StackFrame>();
        foreach (var f in stack.Elements("frame"))
        {
            ValgrindKinds.TryHex(f.Element("ip")?.Value, out ulong ip);
            string? fn = f.Element("fn")?.Value;
            string? file = f.Element("file")?.Value;
            string? dir = f.Element("dir")?.Value;
            var frame = new StackFrame
            {
                Address = ip,
                Module = f.Element("obj")?.Value ?? "",
                Function = fn is null or "???" ? null : fn,
                File = file is null ? null : dir is null || System.IO.Path.IsPathRooted(file) ? file : System.IO.Path.Combine(dir, file),
            };
            if (int.TryParse(f.Element("line")?.Value.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int line)) frame.Line = line;
            frames.Add(frame);
        }
        return frames.ToArray();
    }

    private static LeakToolsException NotValgrind(string? path, string why) =>
        new(FailureKind.InvalidData, "NotValgrindReport",
            $"{path ?? "The input"} is not a valgrind XML report: {why}.", path);
}
