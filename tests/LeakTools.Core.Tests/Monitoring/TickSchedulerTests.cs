using LeakTools.Core.Monitoring;
using Xunit;

namespace LeakTools.Core.Tests.Monitoring;

/// <summary>The tick grid against a fake clock whose work and sleeps are simulated exactly.</summary>
public class TickSchedulerTests
{
    private sealed class FakeClock : IMonotonicClock
    {
        public TimeSpan Elapsed { get; set; } = TimeSpan.FromSeconds(100);
        public List<TimeSpan> Sleeps { get; } = new();
        public bool Sleep(TimeSpan duration, CancellationToken cancellation)
        {
            if (cancellation.IsCancellationRequested) return false;
            Sleeps.Add(duration);
            Elapsed += duration;
            return true;
        }
    }

    private static List<TimeSpan> Run(TickScheduler s, FakeClock clock, TimeSpan work, CancellationToken token = default)
    {
        var ticks = new List<TimeSpan>();
        TimeSpan start = clock.Elapsed;
        while (s.WaitNext(token))
        {
            ticks.Add(clock.Elapsed - start);
            clock.Elapsed += work;
        }
        return ticks;
    }

    [Fact]
    public void Ticks_stay_on_the_grid_whatever_the_work_takes()
    {
        var clock = new FakeClock();
        var s = new TickScheduler(TimeSpan.FromMilliseconds(500), count: 5, clock: clock);
        var ticks = Run(s, clock, TimeSpan.FromMilliseconds(180));
        Assert.Equal(new[] { 0, 500, 1000, 1500, 2000 }, ticks.Select(t => (int)t.TotalMilliseconds));
        Assert.All(clock.Sleeps, d => Assert.Equal(320, d.TotalMilliseconds)); // interval minus the work, not the interval
        Assert.Equal(0, s.Skipped);
    }

    [Fact]
    public void Work_that_overruns_skips_the_missed_ticks_and_keeps_the_grid()
    {
        var clock = new FakeClock();
        var s = new TickScheduler(TimeSpan.FromMilliseconds(500), count: 4, clock: clock);
        var ticks = Run(s, clock, TimeSpan.FromMilliseconds(1200));
        // 0 runs until 1200 -> the tick due at 1000 runs late at once (1200), 500 is skipped;
        // it runs until 2400 -> 2000 runs, 1500 skipped; until 3600 -> 3500 runs, 2500 and 3000 skipped.
        Assert.Equal(new[] { 0, 1200, 2400, 3600 }, ticks.Select(t => (int)t.TotalMilliseconds));
        Assert.Equal(4, s.Skipped);
        Assert.Equal(4, s.Completed);
    }

    [Fact]
    public void A_duration_includes_both_ends()
    {
        var clock = new FakeClock();
        var s = new TickScheduler(TimeSpan.FromSeconds(0.5), duration: TimeSpan.FromSeconds(15), clock: clock);
        Assert.Equal(31, s.Total);
        var ticks = Run(s, clock, TimeSpan.FromMilliseconds(10));
        Assert.Equal(31, ticks.Count);
        Assert.Equal(TimeSpan.FromSeconds(15), ticks[^1]);
    }

    [Fact]
    public void Without_an_end_it_runs_until_cancelled()
    {
        var clock = new FakeClock();
        var s = new TickScheduler(TimeSpan.FromSeconds(1), clock: clock);
        Assert.Null(s.Total);
        using var cts = new CancellationTokenSource();
        int n = 0;
        while (s.WaitNext(cts.Token))
        {
            if (++n == 50) cts.Cancel();
        }
        Assert.Equal(50, n);
    }

    [Fact]
    public void The_real_clock_wakes_at_once_when_cancelled()
    {
        var s = new TickScheduler(TimeSpan.FromSeconds(30));
        using var cts = new CancellationTokenSource();
        Assert.True(s.WaitNext(cts.Token)); // the first tick is now
        cts.CancelAfter(100);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        Assert.False(s.WaitNext(cts.Token));
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5), $"{sw.Elapsed}");
    }

    [Fact]
    public void Bad_arguments_are_rejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new TickScheduler(TimeSpan.Zero));
        Assert.Throws<ArgumentOutOfRangeException>(() => new TickScheduler(TimeSpan.FromSeconds(-1)));
        Assert.Throws<ArgumentOutOfRangeException>(() => new TickScheduler(TimeSpan.FromSeconds(1), count: 0));
    }
}
