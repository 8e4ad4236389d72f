using System.Diagnostics;

namespace LeakTools.Core.Monitoring;

/// <summary>A monotonic clock that can sleep; tests drive a fake one.</summary>
public interface IMonotonicClock
{
    /// <summary>Time since some fixed start; never goes backwards (not the wall clock).</summary>
    TimeSpan Elapsed { get; }

    /// <summary>Sleeps for <paramref name="duration"/>; false if cancelled first.</summary>
    bool Sleep(TimeSpan duration, CancellationToken cancellation);
}

/// <summary>The real clock: Stopwatch time, sleeping on the cancellation token's wait handle so
/// Ctrl+C (StopProcessing) wakes it at once.</summary>
public sealed class StopwatchClock : IMonotonicClock
{
    private readonly Stopwatch _watch = Stopwatch.StartNew();

    public TimeSpan Elapsed => _watch.Elapsed;

    public bool Sleep(TimeSpan duration, CancellationToken cancellation)
    {
        if (duration <= TimeSpan.Zero) return !cancellation.IsCancellationRequested;
        return !cancellation.WaitHandle.WaitOne(duration);
    }
}

/// <summary>Ticks on a fixed grid against a clock — tick k is due at k × interval after the start
/// — not "sleep(interval) after the work", so sampling work does not stretch the period. When the
/// work overruns one or more whole periods, the missed ticks are skipped (counted in
/// <see cref="Skipped"/>) and the next one runs at once, staying on the grid.
/// Ends after <c>count</c> ticks, or after the last tick due within <c>duration</c> (both ends
/// included: 15 s at 0.5 s is 31 ticks spanning 15 s), or never.</summary>
public sealed class TickScheduler
{
    private readonly IMonotonicClock _clock;
    private readonly TimeSpan _start;
    private long _next;

    public TickScheduler(TimeSpan interval, long? count = null, TimeSpan? duration = null, IMonotonicClock? clock = null)
    {
        if (interval <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(interval), "The interval must be positive.");
        if (count is < 1) throw new ArgumentOutOfRangeException(nameof(count), "The count must be at least 1.");
        if (duration < TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(duration), "The duration cannot be negative.");
        Interval = interval;
        Count = count;
        Duration = duration;
        _clock = clock ?? new StopwatchClock();
        _start = _clock.Elapsed;
    }

    public TimeSpan Interval { get; }
    public long? Count { get; }
    public TimeSpan? Duration { get; }

    /// <summary>Ticks run so far.</summary>
    public long Completed { get; private set; }

    /// <summary>Ticks skipped because the work overran.</summary>
    public long Skipped { get; private set; }

    /// <summary>Ticks on the grid in all, when the end is known (for a progress bar).</summary>
    public long? Total => Count ?? (Duration is { } d ? d.Ticks / Interval.Ticks + 1 : null);

    /// <summary>Where the current tick is due, from the start.</summary>
    public TimeSpan Due => TimeSpan.FromTicks(Interval.Ticks * Math.Max(0, _next - 1));

    /// <summary>Waits for the next tick; false when the schedule has ended or was cancelled.</summary>
    public bool WaitNext(CancellationToken cancellation)
    {
        if (cancellation.IsCancellationRequested) return false;
        if (Count is { } c && Completed >= c) return false;

        TimeSpan now = _clock.Elapsed - _start;
        long onGrid = now.Ticks / Interval.Ticks; // the latest tick already due
        if (onGrid > _next)
        {
            Skipped += onGrid - _next;
            _next = onGrid;
        }
        TimeSpan due = TimeSpan.FromTicks(Interval.Ticks * _next);
        if (Duration is { } d && due > d) return false;
        if (due > now && !_clock.Sleep(due - now, cancellation)) return false;
        _next++;
        Completed++;
        return true;
    }
}
