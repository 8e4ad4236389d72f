using System.Text;

namespace LeakTools.Core.Monitoring;

/// <summary>The write-ahead spool of a history: <c>&lt;history&gt;.pending</c>, a CSV of samples
/// (with the monitor's name) not yet in the history. A run first appends its samples here and
/// fsyncs, then moves everything pending into the history in one transaction and empties the
/// spool. If the history is locked or corrupt, the samples wait here for the next run: none is
/// lost. The spool file is held exclusively (flock) for the whole write, which also serialises
/// overlapping runs; it is emptied, never deleted, so a waiting run cannot lock a removed file.</summary>
public sealed class PendingSamples : IDisposable
{
    private static readonly string[] s_header = new[] { "Monitor" }.Concat(SampleFields.All.Select(f => f.Name)).ToArray();
    private readonly FileStream _stream;

    private PendingSamples(string path, FileStream stream)
    {
        Path = path;
        _stream = stream;
    }

    public string Path { get; }

    public static string PathFor(string history) => System.IO.Path.GetFullPath(history) + ".pending";

    /// <summary>Opens and locks the spool of <paramref name="history"/>, waiting up to <paramref name="timeout"/>.</summary>
    public static PendingSamples Open(string history, TimeSpan timeout)
    {
        string path = PathFor(history);
        FileStream stream = FileLocks.OpenExclusive(path, timeout, () => HistoryErrors.Locked(history),
            ex => HistoryErrors.NotWritable(history, ex.Message, ex));
        return new PendingSamples(path, stream);
    }

    /// <summary>Appends samples and flushes them to the disk.</summary>
    public void Append(string monitor, IReadOnlyList<ProcessMemory> samples)
    {
        if (samples.Count == 0) return;
        var sb = new StringBuilder();
        if (_stream.Length == 0) sb.Append(CsvCodec.FormatRecord(s_header)).Append('\n');
        foreach (ProcessMemory m in samples)
            sb.Append(CsvCodec.FormatRecord(new[] { monitor }.Concat(SampleFields.All.Select(f => SampleFields.Format(f.Get(m)))))).Append('\n');
        _stream.Seek(0, SeekOrigin.End);
        byte[] bytes = Encoding.UTF8.GetBytes(sb.ToString());
        _stream.Write(bytes);
        _stream.Flush(flushToDisk: true);
    }

    /// <summary>Everything pending, grouped by monitor in the order written. A record cut short by a
    /// crash is dropped (it was never acknowledged).</summary>
    public List<(string Monitor, List<ProcessMemory> Samples)> ReadAll()
    {
        var groups = new List<(string Monitor, List<ProcessMemory> Samples)>();
        if (_stream.Length == 0) return groups;
        _stream.Seek(0, SeekOrigin.Begin);
        using var reader = new StreamReader(_stream, Encoding.UTF8, detectEncodingFromByteOrderMarks: false, leaveOpen: true);
        string[]? header = null;
        foreach (var (fields, _, complete) in CsvCodec.ReadRecords(reader))
        {
            if (header is null) { header = fields.ToArray(); continue; }
            if (!complete || fields.Count != header.Length) continue;
            var m = new ProcessMemory();
            bool ok = true;
            for (int i = 1; i < header.Length && ok; i++)
            {
                var f = SampleFields.Find(header[i]);
                if (f is null) continue;
                ok = SampleFields.TryParse(f, fields[i], out object? v) && (v is not null || f.Kind == SampleFields.FieldKind.NullableLong);
                if (ok) f.Set(m, v);
            }
            if (!ok) continue;
            string monitor = fields[0];
            if (groups.Count == 0 || groups[^1].Monitor != monitor) groups.Add((monitor, new List<ProcessMemory>()));
            groups[^1].Samples.Add(m);
        }
        return groups;
    }

    /// <summary>Empties the spool once its samples are in the history.</summary>
    public void Clear()
    {
        _stream.SetLength(0);
        _stream.Flush(flushToDisk: true);
    }

    public void Dispose() => _stream.Dispose();
}

/// <summary>Exclusive file opens with a timeout: .NET takes flock(LOCK_EX | LOCK_NB) for
/// FileShare.None on Unix and throws at once when another process holds it, so retry.</summary>
internal static class FileLocks
{
    public static FileStream OpenExclusive(string path, TimeSpan timeout, Func<Exception> onTimeout, Func<Exception, Exception> onFailure, FileMode mode = FileMode.OpenOrCreate)
    {
        var deadline = DateTime.UtcNow + timeout;
        try
        {
            string? dir = System.IO.Path.GetDirectoryName(path);
            if (dir is not null) Directory.CreateDirectory(dir);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw onFailure(ex);
        }
        while (true)
        {
            try
            {
                return new FileStream(path, mode, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException ex) when (ex is not FileNotFoundException and not DirectoryNotFoundException && IsLockConflict(ex))
            {
                if (DateTime.UtcNow >= deadline) throw onTimeout();
                Thread.Sleep(50);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw onFailure(ex);
            }
        }
    }

    // EWOULDBLOCK from flock surfaces as an IOException whose HResult is EWOULDBLOCK (11) on Linux.
    private static bool IsLockConflict(IOException ex) => (ex.HResult & 0xFFFF) == 11 || ex.Message.Contains("used by another process", StringComparison.OrdinalIgnoreCase);
}
