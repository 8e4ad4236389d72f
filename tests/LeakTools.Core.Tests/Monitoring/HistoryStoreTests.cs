using LeakTools.Core.Monitoring;
using Microsoft.Data.Sqlite;
using Xunit;

namespace LeakTools.Core.Tests.Monitoring;

/// <summary>The SQLite and CSV histories and their write-ahead spool, on real files.</summary>
public sealed class HistoryStoreTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("leaktools-history-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    internal static ProcessMemory Sample(int pid, string name, DateTime time, long pss) => new()
    {
        Id = pid,
        Name = name,
        CommandLine = $"/usr/bin/{name} --serve \"quoted, with comma\"",
        User = "root",
        Pss = pss,
        Rss = pss + 4096,
        Uss = pss - 4096,
        PrivateClean = 8192,
        PrivateDirty = pss - 12288,
        SharedClean = 4096,
        SharedDirty = 0,
        Swap = 0,
        SwapPss = pid % 2 == 0 ? null : 0,
        Anonymous = pss - 12288,
        PssDirty = pss / 2,
        PssAnon = null,
        PssFile = 1234,
        PssShmem = 0,
        Locked = 0,
        Source = "smaps_rollup",
        Timestamp = time,
    };

    private static readonly DateTime T0 = new DateTime(2026, 3, 1, 12, 0, 0, DateTimeKind.Local).AddTicks(1234567);

    private static void AssertSame(ProcessMemory expected, ProcessMemory actual, TimeSpan timePrecision)
    {
        foreach (var f in SampleFields.All)
        {
            if (f.Kind == SampleFields.FieldKind.Time)
                Assert.InRange((DateTime)f.Get(actual)! - (DateTime)f.Get(expected)!, -timePrecision, timePrecision);
            else
                Assert.Equal(f.Get(expected), f.Get(actual));
        }
        Assert.Equal(DateTimeKind.Local, actual.Timestamp.Kind);
    }

    [Theory]
    [InlineData("h.db")]
    [InlineData("h.csv")]
    public void Every_field_round_trips_with_nulls_kept(string file)
    {
        string path = Path.Combine(_dir, file);
        var samples = Enumerable.Range(0, 10).Select(i => Sample(100 + i % 2, "daemon", T0.AddSeconds(i * 0.5), 1_000_000 + i * 4096)).ToList();
        using (var store = HistoryStores.Open(path)) store.Append("m1", samples);
        using var read = HistoryStores.Open(path, readOnly: true);
        var back = read.Read(new HistoryQuery()).ToList();
        Assert.Equal(samples.Count, back.Count);
        TimeSpan precision = file.EndsWith(".db") ? TimeSpan.FromMilliseconds(1) : TimeSpan.Zero;
        for (int i = 0; i < samples.Count; i++) AssertSame(samples[i], back[i], precision);
    }

    [Fact]
    public void Sqlite_history_is_in_wal_mode_and_filters_by_monitor_time_id_and_name()
    {
        string path = Path.Combine(_dir, "h.db");
        using (var store = new SqliteHistoryStore(path))
        {
            store.Append("a", Enumerable.Range(0, 6).Select(i => Sample(1, "one", T0.AddMinutes(i), 100 + i)).ToList());
            store.Append("b", Enumerable.Range(0, 6).Select(i => Sample(2, "two", T0.AddMinutes(i), 200 + i)).ToList());
        }
        using (var c = new SqliteConnection($"Data Source={path};Pooling=False"))
        {
            c.Open();
            using var cmd = c.CreateCommand();
            cmd.CommandText = "PRAGMA journal_mode";
            Assert.Equal("wal", (string)cmd.ExecuteScalar()!);
        }
        using var read = new SqliteHistoryStore(path, readOnly: true);
        Assert.Equal(6, read.Read(new HistoryQuery { Monitor = "a" }).Count());
        Assert.Equal(12, read.Read(new HistoryQuery()).Count());
        Assert.Equal(new long[] { 202, 203 }, read.Read(new HistoryQuery { Monitor = "b", Since = T0.AddMinutes(2), Until = T0.AddMinutes(3) }).Select(m => m.Pss));
        Assert.All(read.Read(new HistoryQuery { Ids = new[] { 1 } }), m => Assert.Equal(1, m.Id));
        Assert.All(read.Read(new HistoryQuery { NameFilter = n => n == "two" }), m => Assert.Equal("two", m.Name));
    }

    [Theory]
    [InlineData("h.db")]
    [InlineData("h.csv")]
    public void Retention_prunes_old_samples_runs_and_ended_episodes(string file)
    {
        string path = Path.Combine(_dir, file);
        using var store = HistoryStores.Open(path);
        store.Append("m", Enumerable.Range(0, 10).Select(i => Sample(1, "d", T0.AddDays(i), i)).ToList());
        store.RecordRun(new MonitorRun("m", T0, 1, "Ok", "old"));
        store.SaveEpisode(new GrowthEpisode { Monitor = "m", Id = 1, Name = "d", Started = T0, LastSeen = T0, Ended = T0.AddHours(1) });
        store.SaveEpisode(new GrowthEpisode { Monitor = "m", Id = 1, Name = "d", Started = T0.AddDays(8), LastSeen = T0.AddDays(9) });
        Assert.Equal(7, store.Prune("m", T0.AddDays(7)));
        Assert.Equal(new long[] { 7, 8, 9 }, store.Read(new HistoryQuery()).Select(m => m.Pss));
        Assert.Single(store.OpenEpisodes("m"));
        Assert.Equal(0, store.Prune("m", T0.AddDays(7)));
    }

    [Fact]
    public void Sqlite_runs_and_episodes_survive_reopening()
    {
        string path = Path.Combine(_dir, "h.db");
        using (var store = new SqliteHistoryStore(path))
        {
            store.RecordRun(new MonitorRun("m", T0, 2, "Ok", "first"));
            store.RecordRun(new MonitorRun("m", T0.AddMinutes(1), 0, "NotRunning", "second"));
            var e = new GrowthEpisode { Monitor = "m", Id = 5, Name = "d", Started = T0, LastSeen = T0, SnapshotError = "none" };
            store.SaveEpisode(e);
            e.LastSeen = T0.AddMinutes(5);
            e.SnapshotPath = "/var/lib/leaktools/snapshots/core.d.5";
            store.SaveEpisode(e); // update, not a second row
        }
        using var again = new SqliteHistoryStore(path, readOnly: true);
        MonitorRun last = again.LastRun("m")!;
        Assert.Equal("NotRunning", last.Status);
        Assert.Equal("second", last.Message);
        var open = Assert.Single(again.OpenEpisodes("m"));
        Assert.Equal(T0.AddMinutes(5), open.LastSeen, TimeSpan.FromMilliseconds(1));
        Assert.Equal("/var/lib/leaktools/snapshots/core.d.5", open.SnapshotPath);
        Assert.Null(again.LastRun("other"));
    }

    [Fact]
    public void Csv_history_appends_in_the_column_order_of_an_Export_Csv_file()
    {
        // What `Get-ProcessPss | Export-Csv` writes: a PID alias column first, times in the
        // culture's general format.
        string path = Path.Combine(_dir, "h.csv");
        string header = "\"PID\"," + string.Join(",", SampleFields.All.Select(f => $"\"{f.Name}\""));
        string row = "\"42\",\"42\",\"daemon\",\"/usr/bin/daemon\",\"root\",\"1000\",\"2000\",\"900\",\"0\",\"900\",\"100\",\"0\",\"0\",\"\",\"900\",\"\",\"\",\"\",\"\",\"0\",\"smaps\",\"03/01/2026 12:00:00\"";
        File.WriteAllText(path, header + "\n" + row + "\n");
        using (var store = new CsvHistoryStore(path)) store.Append("m", new[] { Sample(42, "daemon", T0.AddMinutes(1), 5000) });
        string[] lines = File.ReadAllLines(path);
        Assert.Equal(3, lines.Length);
        Assert.StartsWith("\"42\",\"42\",\"daemon\"", lines[2]); // PID column got the Id
        var back = new CsvHistoryStore(path, readOnly: true).Read(new HistoryQuery()).ToList();
        Assert.Equal(new long[] { 1000, 5000 }, back.Select(m => m.Pss));
        Assert.Equal(new DateTime(2026, 3, 1, 12, 0, 0), back[0].Timestamp);
        Assert.Null(back[0].SwapPss);
    }

    [Fact]
    public void Csv_history_ignores_a_last_line_cut_short_and_continues_on_a_fresh_line()
    {
        string path = Path.Combine(_dir, "h.csv");
        using (var store = new CsvHistoryStore(path)) store.Append("m", new[] { Sample(1, "d", T0, 1) });
        File.AppendAllText(path, "\"1\",\"d\",\"cut"); // a crash mid-write
        Assert.Single(new CsvHistoryStore(path, readOnly: true).Read(new HistoryQuery()));
        using (var store = new CsvHistoryStore(path)) store.Append("m", new[] { Sample(1, "d", T0.AddSeconds(1), 2) });
        var ex = Assert.Throws<LeakToolsException>(() => new CsvHistoryStore(path, readOnly: true).Read(new HistoryQuery()).ToList());
        Assert.Equal("HistoryCorrupt", ex.ErrorId); // the cut line is now in the middle: said, with its line number
        Assert.Contains("line 3", ex.Message);
    }

    [Fact]
    public void A_csv_without_a_needed_column_is_corrupt_and_names_it()
    {
        string path = Path.Combine(_dir, "h.csv");
        File.WriteAllText(path, "\"Id\",\"Name\",\"Timestamp\"\n\"1\",\"d\",\"2026-03-01T12:00:00\"\n");
        var ex = Assert.Throws<LeakToolsException>(() => new CsvHistoryStore(path, readOnly: true).Read(new HistoryQuery()).ToList());
        Assert.Equal("HistoryCorrupt", ex.ErrorId);
        Assert.Contains("'CommandLine'", ex.Message);
    }

    [Fact]
    public void A_locked_sqlite_history_keeps_the_samples_in_the_spool_until_the_next_write()
    {
        string path = Path.Combine(_dir, "h.db");
        HistoryWriter.Write(path, "m", new[] { Sample(1, "d", T0, 1) }, TimeSpan.FromSeconds(1));

        using (var holder = new SqliteConnection($"Data Source={path};Pooling=False"))
        {
            holder.Open();
            using var tx = holder.BeginTransaction(System.Data.IsolationLevel.Serializable);
            using (var cmd = holder.CreateCommand())
            {
                cmd.Transaction = tx;
                cmd.CommandText = "INSERT INTO runs VALUES ('x', 0, 0, 'Ok', 'holding the write lock')";
                cmd.ExecuteNonQuery();
            }
            var sw = System.Diagnostics.Stopwatch.StartNew();
            var ex = Assert.Throws<LeakToolsException>(() => HistoryWriter.Write(path, "m", new[] { Sample(1, "d", T0.AddSeconds(1), 2) }, TimeSpan.FromSeconds(1)));
            Assert.Equal("HistoryLocked", ex.ErrorId);
            Assert.Equal(FailureKind.ResourceBusy, ex.Kind);
            Assert.Contains(".pending", ex.Message);
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(10));
            Assert.Contains("\"2\"", File.ReadAllText(path + ".pending")); // the sample waits in the spool
            tx.Rollback();
        }

        int written = HistoryWriter.Write(path, "m", new[] { Sample(1, "d", T0.AddSeconds(2), 3) }, TimeSpan.FromSeconds(1));
        Assert.Equal(2, written); // the pending sample and the new one
        Assert.Equal(new long[] { 1, 2, 3 }, new SqliteHistoryStore(path, readOnly: true).Read(new HistoryQuery()).Select(m => m.Pss));
        Assert.Equal(0, new FileInfo(path + ".pending").Length);
    }

    [Fact]
    public void A_corrupt_history_is_a_clear_error_and_loses_no_sample()
    {
        string path = Path.Combine(_dir, "h.db");
        File.WriteAllText(path, new string('x', 8192)); // not a database
        var ex = Assert.Throws<LeakToolsException>(() => HistoryWriter.Write(path, "m", new[] { Sample(1, "d", T0, 1) }, TimeSpan.FromSeconds(1)));
        Assert.Equal("HistoryCorrupt", ex.ErrorId);
        Assert.Equal(FailureKind.InvalidData, ex.Kind);
        Assert.Contains(path, ex.Message);
        Assert.Contains("Move it aside", ex.Message);

        File.Move(path, path + ".broken"); // what the message says to do
        HistoryWriter.Write(path, "m", new[] { Sample(1, "d", T0.AddSeconds(1), 2) }, TimeSpan.FromSeconds(1));
        Assert.Equal(new long[] { 1, 2 }, new SqliteHistoryStore(path, readOnly: true).Read(new HistoryQuery()).Select(m => m.Pss));
    }

    [Fact]
    public void A_locked_csv_history_keeps_the_samples_too()
    {
        string path = Path.Combine(_dir, "h.csv");
        HistoryWriter.Write(path, "m", new[] { Sample(1, "d", T0, 1) }, TimeSpan.FromSeconds(1));
        using (new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.None)) // flock(LOCK_EX) as another writer holds it
        {
            var ex = Assert.Throws<LeakToolsException>(() => HistoryWriter.Write(path, "m", new[] { Sample(1, "d", T0.AddSeconds(1), 2) }, TimeSpan.FromMilliseconds(300)));
            Assert.Equal("HistoryLocked", ex.ErrorId);
        }
        HistoryWriter.Write(path, "m", Array.Empty<ProcessMemory>(), TimeSpan.FromSeconds(1));
        Assert.Equal(new long[] { 1, 2 }, new CsvHistoryStore(path, readOnly: true).Read(new HistoryQuery()).Select(m => m.Pss));
    }

    [Fact]
    public void Reading_a_missing_history_is_not_found()
    {
        Assert.Equal("HistoryNotFound", Assert.Throws<LeakToolsException>(() => new SqliteHistoryStore(Path.Combine(_dir, "none.db"), readOnly: true)).ErrorId);
        Assert.Equal("HistoryNotFound", Assert.Throws<LeakToolsException>(() => new CsvHistoryStore(Path.Combine(_dir, "none.csv"), readOnly: true)).ErrorId);
    }

    [Fact]
    public void A_history_from_a_newer_schema_is_refused()
    {
        string path = Path.Combine(_dir, "h.db");
        using (var c = new SqliteConnection($"Data Source={path};Pooling=False"))
        {
            c.Open();
            using var cmd = c.CreateCommand();
            cmd.CommandText = "PRAGMA user_version = 99";
            cmd.ExecuteNonQuery();
        }
        var ex = Assert.Throws<LeakToolsException>(() => new SqliteHistoryStore(path));
        Assert.Equal("HistoryCorrupt", ex.ErrorId);
        Assert.Contains("newer LeakTools", ex.Message);
    }
}
