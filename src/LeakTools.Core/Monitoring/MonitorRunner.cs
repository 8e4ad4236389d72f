namespace LeakTools.Core.Monitoring;

/// <summary>How one monitor run behaves (Invoke-LeakMonitor's parameters).</summary>
public sealed record MonitorSettings
{
    public string Monitor { get; init; } = "";
    /// <summary>Process name patterns, for the "not running" record; empty means every process.</summary>
    public IReadOnlyList<string> ProcessNames { get; init; } = Array.Empty<string>();
    public string History { get; init; } = "";
    public TimeSpan Window { get; init; } = TimeSpan.FromHours(1);
    public TimeSpan Retention { get; init; } = MonitorDefinition.DefaultRetention;
    public string Property { get; init; } = "Pss";
    public TrendOptions Trend { get; init; } = new();
    public MonitorAction Action { get; init; }
    public string? SnapshotDirectory { get; init; }
    public string? PrometheusTextfile { get; init; }
    public TimeSpan BusyTimeout { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>While an episode goes on, the syslog warning is repeated this often.</summary>
    public TimeSpan WarningRepeat { get; init; } = TimeSpan.FromHours(1);
}

public enum EpisodeEventKind { Started, Continued, Ended }

/// <summary>What happened to a growth episode in this run.</summary>
public sealed record EpisodeEvent(EpisodeEventKind Kind, GrowthEpisode Episode, string Message);

/// <summary>What one run did.</summary>
public sealed class MonitorRunResult
{
    public DateTime Time { get; init; }
    public List<MemoryTrend> Trends { get; } = new();
    public List<EpisodeEvent> Events { get; } = new();
    /// <summary>Things the user should see that did not stop the run (syslog unavailable, snapshot failed).</summary>
    public List<string> Warnings { get; } = new();
    /// <summary>Failures: history locked or corrupt (samples kept in the spool), textfile not written.</summary>
    public List<LeakToolsException> Errors { get; } = new();
    public int SamplesWritten { get; set; }
    public string Status { get; set; } = "Ok";
}

/// <summary>One round of a scheduled monitor: append the samples to the history (write-ahead),
/// prune by retention, judge each running process's trend over the window, keep growth episodes
/// (a syslog warning when one starts and hourly while it lasts, one snapshot per episode when
/// asked), record the run, and write the Prometheus textfile.</summary>
public sealed class MonitorRunner
{
    private readonly MonitorSettings _settings;
    private readonly ISyslog? _syslog;
    private readonly ISnapshotTaker? _snapshots;
    private readonly Func<DateTime> _now;

    public MonitorRunner(MonitorSettings settings, ISyslog? syslog, ISnapshotTaker? snapshots, Func<DateTime>? now = null)
    {
        _settings = settings;
        _syslog = syslog;
        _snapshots = snapshots;
        _now = now ?? (() => DateTime.Now);
    }

    public MonitorRunResult Run(IReadOnlyList<ProcessMemory> samples)
    {
        var result = new MonitorRunResult { Time = _now() };
        var field = SampleFields.Find(_settings.Property)
            ?? throw new LeakToolsException(FailureKind.InvalidData, "UnknownProperty", $"'{_settings.Property}' is not a memory figure of a sample.", _settings.Property);
        try
        {
            result.SamplesWritten = HistoryWriter.Write(_settings.History, _settings.Monitor, samples, _settings.BusyTimeout, store =>
            {
                store.Prune(_settings.Monitor, result.Time - _settings.Retention);
                var ids = samples.Select(s => s.Id).ToHashSet();
                var window = store.Read(new HistoryQuery { Monitor = _settings.Monitor, Since = result.Time - _settings.Window, Ids = ids }).ToList();
                foreach (var group in window.GroupBy(s => (s.Id, s.Name)))
                {
                    var points = group.Select(s => (s.Timestamp, Value: field.Get(s) as long?)).Where(p => p.Value is not null)
                                      .Select(p => new TrendPoint(p.Timestamp, p.Value!.Value));
                    result.Trends.Add(TrendAnalyzer.Analyze(group.Key.Id, group.Key.Name, field.Name, points, _settings.Trend));
                }
                UpdateEpisodes(store, result);
                result.Status = samples.Count == 0 ? "NotRunning" : result.Trends.Any(t => t.Verdict == TrendVerdict.Growing) ? "Growing" : "Ok";
                store.RecordRun(new MonitorRun(_settings.Monitor, result.Time, ids.Count, result.Status, Summary(samples, result)));
            });
        }
        catch (LeakToolsException ex)
        {
            result.Status = "Error";
            result.Errors.Add(ex);
            Log(SyslogLevel.Error, $"monitor '{_settings.Monitor}': {ex.Message}", result);
        }

        if (_settings.PrometheusTextfile is { } textfile)
        {
            try
            {
                PrometheusTextfile.Write(textfile, PrometheusTextfile.Render(_settings.Monitor, samples, result.Trends, result.Time, result.Status));
            }
            catch (LeakToolsException ex)
            {
                result.Errors.Add(ex);
            }
        }
        return result;
    }

    private string Summary(IReadOnlyList<ProcessMemory> samples, MonitorRunResult result)
    {
        if (samples.Count == 0)
        {
            return _settings.ProcessNames.Count == 0
                ? "No process could be read."
                : $"Not running: no process matches {string.Join(", ", _settings.ProcessNames.Select(n => "'" + n + "'"))}.";
        }
        var growing = result.Trends.Where(t => t.Verdict == TrendVerdict.Growing).ToList();
        return growing.Count == 0
            ? $"{samples.Count} process(es) sampled; none growing."
            : $"{samples.Count} process(es) sampled; growing: {string.Join(", ", growing.Select(t => $"{t.Name} ({t.Id})"))}.";
    }

    private void UpdateEpisodes(IHistoryStore store, MonitorRunResult result)
    {
        DateTime now = result.Time;
        var open = store.OpenEpisodes(_settings.Monitor).ToList();
        foreach (MemoryTrend trend in result.Trends)
        {
            GrowthEpisode? episode = open.FirstOrDefault(e => e.Id == trend.Id && e.Name == trend.Name);
            if (episode is not null) open.Remove(episode);
            if (trend.Verdict == TrendVerdict.Growing)
            {
                if (episode is null)
                {
                    episode = new GrowthEpisode { Monitor = _settings.Monitor, Id = trend.Id, Name = trend.Name, Started = now, LastSeen = now };
                    string message = GrowingMessage(trend);
                    if (_settings.Action == MonitorAction.Snapshot) message += " " + TakeSnapshot(episode, result);
                    episode.LastWarned = now;
                    Log(SyslogLevel.Warning, message, result);
                    result.Events.Add(new EpisodeEvent(EpisodeEventKind.Started, episode, message));
                }
                else
                {
                    episode.LastSeen = now;
                    string message = GrowingMessage(trend) + FormattableString.Invariant($" Growing since {episode.Started:yyyy-MM-dd HH:mm:ss}.");
                    if (episode.LastWarned is not { } warned || now - warned >= _settings.WarningRepeat)
                    {
                        episode.LastWarned = now;
                        Log(SyslogLevel.Warning, message, result);
                    }
                    result.Events.Add(new EpisodeEvent(EpisodeEventKind.Continued, episode, message));
                }
                store.SaveEpisode(episode);
            }
            else if (episode is not null && trend.Verdict is TrendVerdict.Stable or TrendVerdict.Shrinking)
            {
                EndEpisode(store, episode, now, FormattableString.Invariant($"{trend.Name} (pid {trend.Id}) is no longer growing ({trend.Verdict}); it grew from {episode.Started:yyyy-MM-dd HH:mm:ss} on."), result);
            }
            else if (episode is not null)
            {
                episode.LastSeen = now;
                store.SaveEpisode(episode); // InsufficientData: keep the episode open
            }
        }
        foreach (GrowthEpisode gone in open)
            EndEpisode(store, gone, now, FormattableString.Invariant($"{gone.Name} (pid {gone.Id}) is no longer running; it grew from {gone.Started:yyyy-MM-dd HH:mm:ss} on."), result);
    }

    private void EndEpisode(IHistoryStore store, GrowthEpisode episode, DateTime now, string message, MonitorRunResult result)
    {
        episode.Ended = now;
        store.SaveEpisode(episode);
        Log(SyslogLevel.Notice, message, result);
        result.Events.Add(new EpisodeEvent(EpisodeEventKind.Ended, episode, message));
    }

    private string GrowingMessage(MemoryTrend t) => FormattableString.Invariant(
        $"{t.Name} (pid {t.Id}) memory is growing: {t.Property} {TrendAnalyzer.Bytes(t.Last)}, {(t.GrowthPerHour >= 0 ? "+" : "")}{TrendAnalyzer.Bytes(t.GrowthPerHour ?? 0)}/h over {SchedulerFiles.Describe(t.Span)} (Mann-Kendall p={t.PValue:G2}, monitor '{_settings.Monitor}').");

    private string TakeSnapshot(GrowthEpisode episode, MonitorRunResult result)
    {
        if (_snapshots is null)
        {
            episode.SnapshotError = "no snapshot taker is available";
            result.Warnings.Add($"Cannot take a snapshot of {episode.Name} ({episode.Id}): {episode.SnapshotError}.");
            return "No snapshot: " + episode.SnapshotError + ".";
        }
        try
        {
            episode.SnapshotPath = _snapshots.Take(episode.Id, episode.Name, _settings.SnapshotDirectory);
            return "Snapshot: " + episode.SnapshotPath;
        }
        catch (LeakToolsException ex)
        {
            episode.SnapshotError = ex.Message;
            result.Warnings.Add($"The snapshot of {episode.Name} ({episode.Id}) failed: {ex.Message}");
            return "Snapshot failed: " + ex.Message;
        }
    }

    private void Log(SyslogLevel level, string message, MonitorRunResult result)
    {
        if (_syslog is null) return;
        try
        {
            _syslog.Write(level, message);
        }
        catch (LeakToolsException ex)
        {
            result.Warnings.Add(ex.Message + " The message was: " + message);
        }
    }
}
