using System.Text;
using System.Text.Json;

namespace LeakTools.Core.Monitoring;

/// <summary>The CSV history (<c>-History *.csv</c>): the columns of <see cref="ProcessMemory"/> as
/// Export-Csv writes them, so <c>Import-Csv h.csv | Measure-MemoryTrend</c> works and appending to
/// a file that <c>Watch-ProcessMemory | Export-Csv</c> started keeps its column order (an extra
/// column such as PID gets the Id). Times are ISO 8601 with the offset, to the 100 ns. One monitor
/// per file. Runs and growth episodes live beside it in <c>&lt;file&gt;.state.json</c>.</summary>
public sealed class CsvHistoryStore : IHistoryStore
{
    private static readonly string[] s_required = SampleFields.All.Select(f => f.Name).ToArray();
    private readonly bool _readOnly;
    private readonly TimeSpan _timeout;

    public CsvHistoryStore(string path, bool readOnly = false, TimeSpan? busyTimeout = null)
    {
        Path = System.IO.Path.GetFullPath(path);
        _readOnly = readOnly;
        _timeout = busyTimeout ?? TimeSpan.FromSeconds(5);
        if (readOnly && !File.Exists(Path)) throw HistoryErrors.NotFound(Path);
    }

    public string Path { get; }

    private string StatePath => Path + ".state.json";

    public void Append(string monitor, IReadOnlyList<ProcessMemory> samples)
    {
        if (samples.Count == 0) return;
        if (_readOnly) throw HistoryErrors.NotWritable(Path, "it was opened read-only");
        using FileStream stream = FileLocks.OpenExclusive(Path, _timeout, () => HistoryErrors.Locked(Path), ex => HistoryErrors.NotWritable(Path, ex.Message, ex));
        string[] header;
        var sb = new StringBuilder();
        if (stream.Length == 0)
        {
            header = s_required;
            sb.Append(CsvCodec.FormatRecord(header)).Append('\n');
        }
        else
        {
            header = ReadHeader(stream);
            stream.Seek(-1, SeekOrigin.End);
            if (stream.ReadByte() != '\n') sb.Append('\n'); // a previous write cut short: start a fresh line
        }
        var fields = header.Select(h => SampleFields.Find(h) ?? (h.Equals("PID", StringComparison.OrdinalIgnoreCase) ? SampleFields.Find("Id") : null)).ToArray();
        foreach (ProcessMemory m in samples)
            sb.Append(CsvCodec.FormatRecord(fields.Select(f => f is null ? "" : SampleFields.Format(f.Get(m))))).Append('\n');
        stream.Seek(0, SeekOrigin.End);
        stream.Write(Encoding.UTF8.GetBytes(sb.ToString()));
        stream.Flush(flushToDisk: true);
    }

    private string[] ReadHeader(Stream stream)
    {
        stream.Seek(0, SeekOrigin.Begin);
        var reader = new StreamReader(stream, Encoding.UTF8, true, 4096, leaveOpen: true);
        var first = CsvCodec.ReadRecords(reader).FirstOrDefault();
        string[] header = first.Fields?.ToArray() ?? Array.Empty<string>();
        string? missing = s_required.FirstOrDefault(r => !header.Contains(r, StringComparer.OrdinalIgnoreCase));
        if (missing is not null) throw HistoryErrors.Corrupt(Path, $"its header has no '{missing}' column (is it a LeakTools or Get-ProcessPss CSV?)");
        return header;
    }

    public IEnumerable<ProcessMemory> Read(HistoryQuery query)
    {
        var list = new List<ProcessMemory>();
        if (!File.Exists(Path)) return list;
        using var stream = OpenForRead();
        foreach (ProcessMemory m in ReadSamples(stream))
        {
            if (query.Matches(m)) list.Add(m);
        }
        return list.Select((m, i) => (m, i)).OrderBy(t => t.m.Timestamp).ThenBy(t => t.i).Select(t => t.m).ToList();
    }

    private FileStream OpenForRead()
    {
        var deadline = DateTime.UtcNow + _timeout;
        while (true)
        {
            try
            {
                return new FileStream(Path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            }
            catch (FileNotFoundException)
            {
                throw HistoryErrors.NotFound(Path);
            }
            catch (IOException) when (DateTime.UtcNow < deadline)
            {
                Thread.Sleep(50);
            }
            catch (IOException ex)
            {
                throw HistoryErrors.Locked(Path, ex);
            }
            catch (UnauthorizedAccessException ex)
            {
                throw new LeakToolsException(FailureKind.AccessDenied, "HistoryAccessDenied", $"Reading the history {Path} is denied: {ex.Message}", Path, ex);
            }
        }
    }

    private IEnumerable<ProcessMemory> ReadSamples(Stream stream)
    {
        using var reader = new StreamReader(stream, Encoding.UTF8, true, 65536, leaveOpen: true);
        SampleFields.Field?[]? fields = null;
        foreach (var (record, line, complete) in CsvCodec.ReadRecords(reader))
        {
            if (fields is null)
            {
                string? missing = s_required.FirstOrDefault(r => !record.Contains(r, StringComparer.OrdinalIgnoreCase));
                if (missing is not null) throw HistoryErrors.Corrupt(Path, $"its header has no '{missing}' column");
                fields = record.Select(SampleFields.Find).ToArray();
                continue;
            }
            if (!complete) yield break; // the last write was cut short: it was never acknowledged
            if (record.Count != fields.Length) throw HistoryErrors.Corrupt(Path, $"line {line} has {record.Count} fields, the header {fields.Length}");
            var m = new ProcessMemory();
            for (int i = 0; i < fields.Length; i++)
            {
                var f = fields[i];
                if (f is null) continue;
                if (!SampleFields.TryParse(f, record[i], out object? v) || (v is null && f.Kind != SampleFields.FieldKind.NullableLong))
                    throw HistoryErrors.Corrupt(Path, $"line {line}: '{record[i]}' is not a valid {f.Name}");
                f.Set(m, v);
            }
            yield return m;
        }
    }

    public void RecordRun(MonitorRun run) => UpdateState(s => s.Runs[run.Monitor] = run);

    public MonitorRun? LastRun(string monitor) => LoadState().Runs.GetValueOrDefault(monitor);

    public IReadOnlyList<GrowthEpisode> OpenEpisodes(string monitor) =>
        LoadState().Episodes.Where(e => e.Monitor == monitor && e.Ended is null).ToList();

    public void SaveEpisode(GrowthEpisode episode) => UpdateState(s =>
    {
        s.Episodes.RemoveAll(e => e.Monitor == episode.Monitor && e.Id == episode.Id && e.Started == episode.Started);
        s.Episodes.Add(episode);
    });

    public int Prune(string monitor, DateTime cutoff)
    {
        if (_readOnly || !File.Exists(Path)) return 0;
        UpdateState(s => s.Episodes.RemoveAll(e => e.Ended is { } end && end < cutoff));
        using FileStream stream = FileLocks.OpenExclusive(Path, _timeout, () => HistoryErrors.Locked(Path), ex => HistoryErrors.NotWritable(Path, ex.Message, ex), FileMode.Open);
        // Cheap check first: rows are appended in time order, so the first one is the oldest; nothing
        // to do (and nothing more read) unless it is past the cutoff.
        ProcessMemory? oldest = ReadSamples(stream).FirstOrDefault();
        if (oldest is null || oldest.Timestamp >= cutoff) return 0;
        stream.Seek(0, SeekOrigin.Begin);
        var samples = ReadSamples(stream).ToList();
        string[] header = ReadHeader(stream);
        var fields = header.Select(h => SampleFields.Find(h) ?? (h.Equals("PID", StringComparison.OrdinalIgnoreCase) ? SampleFields.Find("Id") : null)).ToArray();
        var kept = samples.Where(m => m.Timestamp >= cutoff).ToList();
        string temp = Path + ".prune" + Environment.ProcessId;
        using (var writer = new StreamWriter(temp, false, new UTF8Encoding(false)))
        {
            writer.NewLine = "\n";
            writer.WriteLine(CsvCodec.FormatRecord(header));
            foreach (ProcessMemory m in kept) writer.WriteLine(CsvCodec.FormatRecord(fields.Select(f => f is null ? "" : SampleFields.Format(f.Get(m)))));
            writer.Flush();
            ((FileStream)writer.BaseStream).Flush(flushToDisk: true);
        }
        File.Move(temp, Path, overwrite: true); // atomic: readers see the old or the new file
        return samples.Count - kept.Count;
    }

    public void Dispose() { }

    private sealed class State
    {
        public Dictionary<string, MonitorRun> Runs { get; set; } = new();
        public List<GrowthEpisode> Episodes { get; set; } = new();
    }

    private State LoadState()
    {
        if (!File.Exists(StatePath)) return new State();
        try
        {
            return JsonSerializer.Deserialize<State>(File.ReadAllText(StatePath)) ?? new State();
        }
        catch (JsonException ex)
        {
            throw HistoryErrors.Corrupt(StatePath, ex.Message, ex);
        }
    }

    private void UpdateState(Action<State> change)
    {
        if (_readOnly) throw HistoryErrors.NotWritable(Path, "it was opened read-only");
        State state = LoadState();
        change(state);
        string temp = StatePath + ".tmp" + Environment.ProcessId;
        try
        {
            File.WriteAllText(temp, JsonSerializer.Serialize(state, new JsonSerializerOptions { WriteIndented = true }));
            File.Move(temp, StatePath, overwrite: true);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw HistoryErrors.NotWritable(StatePath, ex.Message, ex);
        }
    }
}
