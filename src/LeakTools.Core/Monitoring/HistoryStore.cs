namespace LeakTools.Core.Monitoring;

/// <summary>One run of a monitor: when, how many processes matched, and what came of it
/// ("Ok", "NotRunning", "Growing", "Error").</summary>
public sealed record MonitorRun(string Monitor, DateTime Time, int Processes, string Status, string Message);

/// <summary>A stretch of runs in which one process was judged Growing. A snapshot is taken once
/// per episode; an episode ends when the process is no longer Growing or has exited.</summary>
public sealed class GrowthEpisode
{
    public string Monitor { get; set; } = "";
    public int Id { get; set; }
    public string Name { get; set; } = "";
    public DateTime Started { get; set; }
    public DateTime LastSeen { get; set; }
    public DateTime? LastWarned { get; set; }
    public DateTime? Ended { get; set; }
    public string? SnapshotPath { get; set; }
    public string? SnapshotError { get; set; }
}

/// <summary>Which samples to read back.</summary>
public sealed record HistoryQuery
{
    /// <summary>Only this monitor's samples (SQLite; a CSV history holds one monitor).</summary>
    public string? Monitor { get; init; }
    public DateTime? Since { get; init; }
    public DateTime? Until { get; init; }
    public IReadOnlyCollection<int>? Ids { get; init; }
    public Func<string, bool>? NameFilter { get; init; }

    internal bool Matches(ProcessMemory m) =>
        (Since is not { } s || m.Timestamp >= s) &&
        (Until is not { } u || m.Timestamp <= u) &&
        (Ids is null || Ids.Count == 0 || Ids.Contains(m.Id)) &&
        (NameFilter is null || NameFilter(m.Name));
}

/// <summary>Where a monitor keeps its samples, runs and growth episodes.</summary>
public interface IHistoryStore : IDisposable
{
    string Path { get; }

    /// <summary>Appends samples in one transaction: all or none.</summary>
    void Append(string monitor, IReadOnlyList<ProcessMemory> samples);

    /// <summary>Samples in time order.</summary>
    IEnumerable<ProcessMemory> Read(HistoryQuery query);

    void RecordRun(MonitorRun run);

    MonitorRun? LastRun(string monitor);

    /// <summary>Episodes of this monitor that have not ended.</summary>
    IReadOnlyList<GrowthEpisode> OpenEpisodes(string monitor);

    /// <summary>Inserts or updates an episode (keyed by monitor, pid and start).</summary>
    void SaveEpisode(GrowthEpisode episode);

    /// <summary>Deletes this monitor's samples and runs older than <paramref name="cutoff"/>, and
    /// episodes that ended before it; returns the number of samples deleted.</summary>
    int Prune(string monitor, DateTime cutoff);
}

/// <summary>Opens the right store for a path: <c>*.csv</c> is a CSV file (as Export-Csv writes),
/// anything else an SQLite database.</summary>
public static class HistoryStores
{
    public static bool IsCsv(string path) => path.EndsWith(".csv", StringComparison.OrdinalIgnoreCase);

    public static IHistoryStore Open(string path, bool readOnly = false, TimeSpan? busyTimeout = null) =>
        IsCsv(path) ? new CsvHistoryStore(path, readOnly, busyTimeout) : new SqliteHistoryStore(path, readOnly, busyTimeout);
}

/// <summary>The errors a history store reports.</summary>
public static class HistoryErrors
{
    public static LeakToolsException Locked(string path, Exception? inner = null) =>
        new(FailureKind.ResourceBusy, "HistoryLocked",
            $"The history {path} is locked by another process (a long transaction or another monitor run); the samples of this run are kept in {PendingSamples.PathFor(path)} and written at the next run.",
            path, inner);

    public static LeakToolsException Corrupt(string path, string detail, Exception? inner = null) =>
        new(FailureKind.InvalidData, "HistoryCorrupt",
            $"The history {path} cannot be read: {detail}. Move it aside (the next run starts a new one); the samples of this run are kept in {PendingSamples.PathFor(path)}.",
            path, inner);

    public static LeakToolsException NotFound(string path) =>
        new(FailureKind.NotFound, "HistoryNotFound", $"There is no history at {path}.", path);

    public static LeakToolsException NotWritable(string path, string detail, Exception? inner = null) =>
        new(FailureKind.AccessDenied, "HistoryNotWritable", $"The history {path} cannot be written: {detail}.", path, inner);
}
