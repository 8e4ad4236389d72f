namespace LeakTools.Core.ProcFs;

/// <summary>Remembers who each pid is between the ticks of a watch, so following processes by
/// name does not re-read every process's status and cmdline at every tick (about 30 µs a process:
/// 6 ms a tick on a box with 200 processes). A pid not seen before is read at once, so a restart
/// (a new pid) is picked up at the next tick; a known pid is re-read after <c>maxAge</c>, spread
/// per pid, so a process that exec()s another program under its pid is noticed within that time.
/// Pids that left the listing are forgotten, so a reused pid is read anew.</summary>
public sealed class ProcessIdentityCache
{
    private readonly ProcessReader _reader;
    private readonly TimeSpan _maxAge;
    private readonly Dictionary<int, (ProcessIdentity Identity, long ReadAt)> _known = new();
    private readonly System.Diagnostics.Stopwatch _clock = System.Diagnostics.Stopwatch.StartNew();

    public ProcessIdentityCache(ProcessReader reader, TimeSpan maxAge)
    {
        _reader = reader;
        _maxAge = maxAge;
    }

    /// <summary>Reads made (cache misses), for tests.</summary>
    public long Reads { get; private set; }

    /// <summary>The identity of <paramref name="pid"/>: cached if fresh, else read (throwing as
    /// <see cref="ProcessReader.ReadIdentity"/> does).</summary>
    public ProcessIdentity Read(int pid)
    {
        long now = _clock.ElapsedTicks;
        if (_known.TryGetValue(pid, out var entry) && now - entry.ReadAt < AgeLimit(pid)) return entry.Identity;
        Reads++;
        ProcessIdentity identity;
        try
        {
            identity = _reader.ReadIdentity(pid);
        }
        catch (LeakToolsException)
        {
            _known.Remove(pid);
            throw;
        }
        _known[pid] = (identity, now);
        return identity;
    }

    /// <summary>Forgets pids that are no longer listed.</summary>
    public void Retain(IReadOnlyCollection<int> listed)
    {
        if (_known.Count == 0) return;
        var live = listed as ISet<int> ?? new HashSet<int>(listed);
        foreach (int pid in _known.Keys.Where(p => !live.Contains(p)).ToList()) _known.Remove(pid);
    }

    // Between half and all of maxAge, by pid, so the re-reads spread over the ticks.
    private long AgeLimit(int pid) =>
        (long)(_maxAge.TotalSeconds * System.Diagnostics.Stopwatch.Frequency * (0.5 + (uint)pid % 101 / 202.0));
}
