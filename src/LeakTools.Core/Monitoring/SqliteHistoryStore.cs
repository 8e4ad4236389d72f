using System.Text;
using Microsoft.Data.Sqlite;

namespace LeakTools.Core.Monitoring;

/// <summary>The default history: an SQLite database in WAL mode (readers never block the monitor's
/// write, a crash mid-write loses nothing committed), one row per sample with every
/// <see cref="ProcessMemory"/> field, plus the monitor's runs and growth episodes.</summary>
public sealed class SqliteHistoryStore : IHistoryStore
{
    private const int SchemaVersion = 1;
    private readonly SqliteConnection _connection;

    public SqliteHistoryStore(string path, bool readOnly = false, TimeSpan? busyTimeout = null)
    {
        SqliteNativeLibrary.Register();
        Path = System.IO.Path.GetFullPath(path);
        if (readOnly && !File.Exists(Path)) throw HistoryErrors.NotFound(Path);
        if (!readOnly)
        {
            string? dir = System.IO.Path.GetDirectoryName(Path);
            try
            {
                if (dir is not null) Directory.CreateDirectory(dir);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw HistoryErrors.NotWritable(Path, ex.Message, ex);
            }
        }
        var builder = new SqliteConnectionStringBuilder
        {
            DataSource = Path,
            Mode = readOnly ? SqliteOpenMode.ReadOnly : SqliteOpenMode.ReadWriteCreate,
            Pooling = false, // close the file on Dispose
            DefaultTimeout = (int)Math.Ceiling((busyTimeout ?? TimeSpan.FromSeconds(5)).TotalSeconds),
        };
        _connection = new SqliteConnection(builder.ToString());
        Guard(() =>
        {
            _connection.Open();
            Execute($"PRAGMA busy_timeout = {(int)(busyTimeout ?? TimeSpan.FromSeconds(5)).TotalMilliseconds}");
            long version = (long)Scalar("PRAGMA user_version")!;
            if (version > SchemaVersion)
                throw HistoryErrors.Corrupt(Path, $"it was written by a newer LeakTools (schema {version}, this one knows {SchemaVersion})");
            if (!readOnly)
            {
                Execute("PRAGMA journal_mode = WAL");
                Execute("PRAGMA synchronous = NORMAL");
                if (version < SchemaVersion) CreateSchema();
            }
            else if (version == 0)
            {
                throw HistoryErrors.Corrupt(Path, "it is not a LeakTools history (no schema)");
            }
            return 0;
        });
    }

    public string Path { get; }

    private static readonly string s_columns = string.Join(", ", SampleFields.All.Select(f => f.Column));

    private void CreateSchema()
    {
        var cols = new StringBuilder("monitor TEXT NOT NULL");
        foreach (var f in SampleFields.All)
        {
            string type = f.Kind switch
            {
                SampleFields.FieldKind.Text => "TEXT NOT NULL",
                SampleFields.FieldKind.NullableLong => "INTEGER",
                _ => "INTEGER NOT NULL",
            };
            cols.Append(", ").Append(f.Column).Append(' ').Append(type);
        }
        using var tx = _connection.BeginTransaction();
        Execute($"CREATE TABLE IF NOT EXISTS samples ({cols})");
        Execute("CREATE INDEX IF NOT EXISTS samples_by_time ON samples (monitor, time_ms)");
        Execute("CREATE TABLE IF NOT EXISTS runs (monitor TEXT NOT NULL, time_ms INTEGER NOT NULL, processes INTEGER NOT NULL, status TEXT NOT NULL, message TEXT NOT NULL)");
        Execute("CREATE INDEX IF NOT EXISTS runs_by_time ON runs (monitor, time_ms)");
        Execute("CREATE TABLE IF NOT EXISTS episodes (monitor TEXT NOT NULL, pid INTEGER NOT NULL, name TEXT NOT NULL, started_ms INTEGER NOT NULL, " +
                "last_seen_ms INTEGER NOT NULL, warned_ms INTEGER, ended_ms INTEGER, snapshot_path TEXT, snapshot_error TEXT, PRIMARY KEY (monitor, pid, started_ms))");
        Execute($"PRAGMA user_version = {SchemaVersion}");
        tx.Commit();
    }

    public void Append(string monitor, IReadOnlyList<ProcessMemory> samples)
    {
        if (samples.Count == 0) return;
        Guard(() =>
        {
            using var tx = _connection.BeginTransaction();
            using var cmd = _connection.CreateCommand();
            cmd.Transaction = tx;
            var names = SampleFields.All.Select((f, i) => "$p" + i).ToArray();
            cmd.CommandText = $"INSERT INTO samples (monitor, {s_columns}) VALUES ($monitor, {string.Join(", ", names)})";
            var monitorParam = cmd.Parameters.Add("$monitor", SqliteType.Text);
            var parameters = names.Select(n => cmd.Parameters.Add(n, SqliteType.Integer)).ToArray();
            foreach (ProcessMemory m in samples)
            {
                monitorParam.Value = monitor;
                for (int i = 0; i < SampleFields.All.Count; i++)
                {
                    var f = SampleFields.All[i];
                    object? v = f.Get(m);
                    parameters[i].SqliteType = f.Kind == SampleFields.FieldKind.Text ? SqliteType.Text : SqliteType.Integer;
                    parameters[i].Value = v is DateTime t ? ToMs(t) : v ?? DBNull.Value;
                }
                cmd.ExecuteNonQuery();
            }
            tx.Commit();
            return 0;
        });
    }

    public IEnumerable<ProcessMemory> Read(HistoryQuery query)
    {
        // Read all rows of the window before yielding: errors surface here, not mid-pipeline.
        return Guard(() =>
        {
            using var cmd = _connection.CreateCommand();
            var where = new List<string>();
            if (query.Monitor is not null) { where.Add("monitor = $monitor"); cmd.Parameters.AddWithValue("$monitor", query.Monitor); }
            if (query.Since is { } since) { where.Add("time_ms >= $since"); cmd.Parameters.AddWithValue("$since", ToMs(since)); }
            if (query.Until is { } until) { where.Add("time_ms <= $until"); cmd.Parameters.AddWithValue("$until", ToMs(until)); }
            cmd.CommandText = $"SELECT {s_columns} FROM samples {(where.Count > 0 ? "WHERE " + string.Join(" AND ", where) : "")} ORDER BY time_ms, rowid";
            var list = new List<ProcessMemory>();
            var rest = query with { Monitor = null, Since = null, Until = null }; // those are in the SQL already
            using var reader = cmd.ExecuteReader();
            while (reader.Read())
            {
                var m = new ProcessMemory();
                for (int i = 0; i < SampleFields.All.Count; i++)
                {
                    var f = SampleFields.All[i];
                    object? v = reader.IsDBNull(i) ? null : f.Kind switch
                    {
                        SampleFields.FieldKind.Text => reader.GetString(i),
                        SampleFields.FieldKind.Int => reader.GetInt32(i),
                        SampleFields.FieldKind.Time => FromMs(reader.GetInt64(i)),
                        _ => reader.GetInt64(i),
                    };
                    f.Set(m, v);
                }
                if (rest.Matches(m)) list.Add(m);
            }
            return list;
        });
    }

    public void RecordRun(MonitorRun run) => Guard(() =>
    {
        using var cmd = _connection.CreateCommand();
        cmd.CommandText = "INSERT INTO runs (monitor, time_ms, processes, status, message) VALUES ($m, $t, $n, $s, $msg)";
        cmd.Parameters.AddWithValue("$m", run.Monitor);
        cmd.Parameters.AddWithValue("$t", ToMs(run.Time));
        cmd.Parameters.AddWithValue("$n", run.Processes);
        cmd.Parameters.AddWithValue("$s", run.Status);
        cmd.Parameters.AddWithValue("$msg", run.Message);
        return cmd.ExecuteNonQuery();
    });

    public MonitorRun? LastRun(string monitor) => Guard(() =>
    {
        using var cmd = _connection.CreateCommand();
        cmd.CommandText = "SELECT time_ms, processes, status, message FROM runs WHERE monitor = $m ORDER BY time_ms DESC, rowid DESC LIMIT 1";
        cmd.Parameters.AddWithValue("$m", monitor);
        using var r = cmd.ExecuteReader();
        return r.Read() ? new MonitorRun(monitor, FromMs(r.GetInt64(0)), r.GetInt32(1), r.GetString(2), r.GetString(3)) : null;
    });

    public IReadOnlyList<GrowthEpisode> OpenEpisodes(string monitor) => Guard(() =>
    {
        using var cmd = _connection.CreateCommand();
        cmd.CommandText = "SELECT pid, name, started_ms, last_seen_ms, warned_ms, snapshot_path, snapshot_error FROM episodes WHERE monitor = $m AND ended_ms IS NULL ORDER BY started_ms";
        cmd.Parameters.AddWithValue("$m", monitor);
        using var r = cmd.ExecuteReader();
        var list = new List<GrowthEpisode>();
        while (r.Read())
        {
            list.Add(new GrowthEpisode
            {
                Monitor = monitor,
                Id = r.GetInt32(0),
                Name = r.GetString(1),
                Started = FromMs(r.GetInt64(2)),
                LastSeen = FromMs(r.GetInt64(3)),
                LastWarned = r.IsDBNull(4) ? null : FromMs(r.GetInt64(4)),
                SnapshotPath = r.IsDBNull(5) ? null : r.GetString(5),
                SnapshotError = r.IsDBNull(6) ? null : r.GetString(6),
            });
        }
        return (IReadOnlyList<GrowthEpisode>)list;
    });

    public void SaveEpisode(GrowthEpisode e) => Guard(() =>
    {
        using var cmd = _connection.CreateCommand();
        cmd.CommandText = "INSERT INTO episodes (monitor, pid, name, started_ms, last_seen_ms, warned_ms, ended_ms, snapshot_path, snapshot_error) " +
                          "VALUES ($m, $pid, $name, $start, $seen, $warned, $ended, $path, $err) " +
                          "ON CONFLICT (monitor, pid, started_ms) DO UPDATE SET name = $name, last_seen_ms = $seen, warned_ms = $warned, " +
                          "ended_ms = $ended, snapshot_path = $path, snapshot_error = $err";
        cmd.Parameters.AddWithValue("$m", e.Monitor);
        cmd.Parameters.AddWithValue("$pid", e.Id);
        cmd.Parameters.AddWithValue("$name", e.Name);
        cmd.Parameters.AddWithValue("$start", ToMs(e.Started));
        cmd.Parameters.AddWithValue("$seen", ToMs(e.LastSeen));
        cmd.Parameters.AddWithValue("$warned", e.LastWarned is { } w ? ToMs(w) : DBNull.Value);
        cmd.Parameters.AddWithValue("$ended", e.Ended is { } x ? ToMs(x) : DBNull.Value);
        cmd.Parameters.AddWithValue("$path", (object?)e.SnapshotPath ?? DBNull.Value);
        cmd.Parameters.AddWithValue("$err", (object?)e.SnapshotError ?? DBNull.Value);
        return cmd.ExecuteNonQuery();
    });

    public int Prune(string monitor, DateTime cutoff) => Guard(() =>
    {
        using var tx = _connection.BeginTransaction();
        long ms = ToMs(cutoff);
        int deleted = Execute("DELETE FROM samples WHERE monitor = $m AND time_ms < $c", ("$m", monitor), ("$c", ms));
        Execute("DELETE FROM runs WHERE monitor = $m AND time_ms < $c", ("$m", monitor), ("$c", ms));
        Execute("DELETE FROM episodes WHERE monitor = $m AND ended_ms IS NOT NULL AND ended_ms < $c", ("$m", monitor), ("$c", ms));
        tx.Commit();
        return deleted;
    });

    public void Dispose() => _connection.Dispose();

    private int Execute(string sql, params (string Name, object Value)[] parameters)
    {
        using var cmd = _connection.CreateCommand();
        cmd.CommandText = sql;
        foreach (var (name, value) in parameters) cmd.Parameters.AddWithValue(name, value);
        return cmd.ExecuteNonQuery();
    }

    private object? Scalar(string sql)
    {
        using var cmd = _connection.CreateCommand();
        cmd.CommandText = sql;
        return cmd.ExecuteScalar();
    }

    /// <summary>Turns SQLite's errors into the history errors (locked, corrupt, not writable).</summary>
    private T Guard<T>(Func<T> action)
    {
        try
        {
            return action();
        }
        catch (SqliteException ex)
        {
            throw (ex.SqliteErrorCode & 0xFF) switch
            {
                5 or 6 => HistoryErrors.Locked(Path, ex),                                   // BUSY, LOCKED
                11 or 26 => HistoryErrors.Corrupt(Path, ex.Message.TrimEnd('.'), ex),        // CORRUPT, NOTADB
                8 or 14 or 3 or 23 => HistoryErrors.NotWritable(Path, ex.Message.TrimEnd('.'), ex), // READONLY, CANTOPEN, PERM, AUTH
                13 => HistoryErrors.NotWritable(Path, "the disk is full", ex),
                _ => new LeakToolsException(FailureKind.SystemError, "HistoryFailed", $"The history {Path} failed: {ex.Message}", Path, ex),
            };
        }
    }

    internal static long ToMs(DateTime t) =>
        new DateTimeOffset(t.Kind == DateTimeKind.Unspecified ? DateTime.SpecifyKind(t, DateTimeKind.Local) : t).ToUnixTimeMilliseconds();

    internal static DateTime FromMs(long ms) => DateTimeOffset.FromUnixTimeMilliseconds(ms).LocalDateTime;
}
