namespace LeakTools.Core.Monitoring;

/// <summary>Writes samples to a history through its write-ahead spool (<see cref="PendingSamples"/>):
/// spool first (fsync), then everything pending into the store in one transaction, then empty the
/// spool. A locked or corrupt history fails the write with a clear error and keeps the samples.</summary>
public static class HistoryWriter
{
    /// <summary>Appends <paramref name="samples"/> (plus anything left pending by earlier runs);
    /// returns how many samples went into the store. <paramref name="afterWrite"/> runs with the
    /// store open and the spool still locked (pruning, reading back, episodes).</summary>
    public static int Write(string history, string monitor, IReadOnlyList<ProcessMemory> samples, TimeSpan busyTimeout, Action<IHistoryStore>? afterWrite = null)
    {
        using PendingSamples spool = PendingSamples.Open(history, busyTimeout);
        spool.Append(monitor, samples);
        var pending = spool.ReadAll();
        using IHistoryStore store = HistoryStores.Open(history, readOnly: false, busyTimeout);
        int written = 0;
        foreach (var (m, list) in pending)
        {
            store.Append(m, list);
            written += list.Count;
        }
        spool.Clear();
        afterWrite?.Invoke(store);
        return written;
    }
}
