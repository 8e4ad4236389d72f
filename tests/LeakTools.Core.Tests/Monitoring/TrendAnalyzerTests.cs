using LeakTools.Core.Monitoring;
using Xunit;

namespace LeakTools.Core.Tests.Monitoring;

/// <summary>The verdict on synthetic series whose truth is known: leaks under noise, sawtooths at
/// every phase, a leak riding a sawtooth, flat memory with spikes.</summary>
public class TrendAnalyzerTests
{
    private const double MiB = 1 << 20;
    private static readonly DateTime T0 = new(2026, 3, 1, 12, 0, 0, DateTimeKind.Local);

    private static List<TrendPoint> Series(double seconds, double step, Func<double, double> f)
    {
        var list = new List<TrendPoint>();
        for (int i = 0; i * step <= seconds + 1e-9; i++)
        {
            double t = i * step;
            list.Add(new TrendPoint(T0.AddSeconds(t), (long)(100 * MiB + f(t))));
        }
        return list;
    }

    private static double Saw(double t, double period, double phase, double amplitude) => amplitude * ((t / period + phase) % 1.0);

    private static MemoryTrend Judge(IEnumerable<TrendPoint> points, TrendOptions? options = null) => TrendAnalyzer.Analyze(7, "fixture", "Pss", points, options);

    [Fact]
    public void A_steady_leak_of_1_MiB_per_second_is_growing_within_15_s_of_half_second_samples()
    {
        var t = Judge(Series(15, 0.5, s => MiB * s));
        Assert.Equal(TrendVerdict.Growing, t.Verdict);
        Assert.Equal(31, t.Samples);
        Assert.Equal(TimeSpan.FromSeconds(15), t.Span);
        Assert.Equal(3600 * MiB, (double)t.GrowthPerHour!, 0);
        Assert.True(t.PValue < 1e-6);
        Assert.Equal(1, t.Tau!.Value, 9);
    }

    [Theory]
    [InlineData(0.5)]
    [InlineData(1)]
    [InlineData(2)]
    public void A_leak_under_heavy_gaussian_noise_is_growing(double noiseMiB)
    {
        var rnd = new Random(11);
        var t = Judge(Series(15, 0.5, s => MiB * s + noiseMiB * MiB * Gauss(rnd)));
        Assert.Equal(TrendVerdict.Growing, t.Verdict);
        Assert.InRange(t.GrowthPerHour!.Value / 3600.0 / MiB, 0.7, 1.3);
    }

    [Fact]
    public void A_slow_leak_under_noise_is_growing_over_a_monitor_window()
    {
        // 10 KiB a minute under 400 KiB of noise, sampled once a minute for 6 hours: the leak is
        // smaller than the noise at every step, but not over the window.
        var rnd = new Random(3);
        var t = Judge(Series(6 * 3600, 60, s => 10 * 1024 * s / 60 + 400 * 1024 * Gauss(rnd)));
        Assert.Equal(TrendVerdict.Growing, t.Verdict);
        Assert.InRange(t.GrowthPerHour!.Value, 400 * 1024, 800 * 1024); // truth: 600 KiB/h
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(7.5)]
    [InlineData(10)]
    [InlineData(12)]
    public void A_sawtooth_is_stable_at_every_phase(double period)
    {
        var rnd = new Random(5);
        for (int k = 0; k < 20; k++)
        {
            double phase = k / 20.0;
            var clean = Judge(Series(15, 0.5, s => Saw(s, period, phase, 8 * MiB)));
            Assert.True(clean.Verdict == TrendVerdict.Stable, $"period {period} s, phase {phase}: {clean.Verdict} ({clean.Reason})");
            var noisy = Judge(Series(15, 0.5, s => Saw(s, period, phase, 8 * MiB) + 100 * 1024 * Gauss(rnd)));
            Assert.True(noisy.Verdict == TrendVerdict.Stable, $"noisy period {period} s, phase {phase}: {noisy.Verdict} ({noisy.Reason})");
        }
    }

    [Fact]
    public void A_sawtooth_that_fools_the_trend_test_is_stopped_by_its_oscillation()
    {
        // Two teeth in the window: most sample pairs lie within one rising tooth, so Mann-Kendall
        // finds a significant rise; the trend line still rises less than the teeth are tall.
        var t = Judge(Series(15, 0.5, s => Saw(s, 7.5, 0.0, 8 * MiB)));
        Assert.True(t.PValue < 0.05, $"p={t.PValue}");
        Assert.True(t.GrowthPerHour > 0);
        Assert.Equal(TrendVerdict.Stable, t.Verdict);
        Assert.Contains("swing", t.Reason);
        Assert.True(t.Growth < t.Oscillation);
    }

    [Fact]
    public void A_sawtooth_caught_mid_tooth_is_stopped_by_its_floor()
    {
        // A long tooth: the trend line rises more than the residual swing, but the lowest values of
        // the first and last quarters are the same floor.
        MemoryTrend? decisive = null;
        for (int k = 0; k < 20 && decisive is null; k++)
        {
            var t = Judge(Series(15, 0.5, s => Saw(s, 12, k / 20.0, 8 * MiB)));
            Assert.Equal(TrendVerdict.Stable, t.Verdict);
            if (t.Reason.Contains("floor")) decisive = t;
        }
        Assert.NotNull(decisive);
        Assert.True(decisive!.PValue < 0.05);
        Assert.True(decisive.Growth > decisive.Oscillation);
        Assert.True(decisive.FloorRise <= decisive.Oscillation / 2);
    }

    [Fact]
    public void A_leak_riding_a_sawtooth_is_growing_once_the_window_outgrows_the_teeth()
    {
        // 0.2 MiB/s under 8 MiB teeth of 3 s: in 15 s the floor rises 3 MiB, less than a tooth, so
        // no verdict; over two minutes it rises 24 MiB.
        var shortWindow = Judge(Series(15, 0.5, s => 0.2 * MiB * s + Saw(s, 3, 0.3, 8 * MiB)));
        var longWindow = Judge(Series(120, 0.5, s => 0.2 * MiB * s + Saw(s, 3, 0.3, 8 * MiB)));
        Assert.Equal(TrendVerdict.Stable, shortWindow.Verdict);
        Assert.Equal(TrendVerdict.Growing, longWindow.Verdict);
        Assert.InRange(longWindow.GrowthPerHour!.Value / 3600.0 / MiB, 0.1, 0.3);
    }

    [Fact]
    public void Flat_memory_with_rare_spikes_is_stable()
    {
        var rnd = new Random(9);
        var t = Judge(Series(15, 0.5, s => (rnd.NextDouble() < 0.1 ? 30 * MiB : 0) + 4096 * Math.Round(Gauss(rnd))));
        Assert.Equal(TrendVerdict.Stable, t.Verdict);
    }

    [Fact]
    public void Constant_memory_is_stable_with_p_1()
    {
        var t = Judge(Series(15, 0.5, _ => 0));
        Assert.Equal(TrendVerdict.Stable, t.Verdict);
        Assert.Equal(1, t.PValue);
        Assert.Equal(0, t.GrowthPerHour);
    }

    [Fact]
    public void A_drift_of_a_few_KiB_from_page_sharing_is_stable()
    {
        // What a flat process's Pss does while other processes start: its share of libc falls by a
        // KiB now and then — monotone, so significant, but below what Pss can tell.
        var t = Judge(Series(15, 0.5, s => -1024 * Math.Floor(s / 2)));
        Assert.True(t.PValue < 0.001);
        Assert.True(t.GrowthPerHour < 0);
        Assert.Equal(TrendVerdict.Stable, t.Verdict);
        Assert.Contains("page sharing", t.Reason);
    }

    [Fact]
    public void Memory_given_back_steadily_is_shrinking()
    {
        var t = Judge(Series(15, 0.5, s => -MiB * s));
        Assert.Equal(TrendVerdict.Shrinking, t.Verdict);
        Assert.True(t.GrowthPerHour < 0);
    }

    [Fact]
    public void MinimumGrowth_and_Confidence_tune_the_verdict()
    {
        var slow = Series(15, 0.5, s => 10 * 1024 * s); // 36 MiB/h
        Assert.Equal(TrendVerdict.Growing, Judge(slow).Verdict);
        var t = Judge(slow, new TrendOptions { MinimumGrowthPerHour = 100 * MiB });
        Assert.Equal(TrendVerdict.Stable, t.Verdict);
        Assert.Contains("MinimumGrowth", t.Reason);

        // Six samples of a weak rise: significant at 0.95 (p ~ 0.02), not at 0.99.
        var few = new[] { 0, 1, 3, 2, 4, 5 }.Select((v, i) => new TrendPoint(T0.AddSeconds(i), (long)(v * MiB))).ToList();
        var at95 = Judge(few);
        Assert.InRange(at95.PValue!.Value, 0.01, 0.05);
        Assert.Equal(TrendVerdict.Stable, Judge(few, new TrendOptions { Confidence = 0.99 }).Verdict);
    }

    [Fact]
    public void Too_few_samples_or_one_instant_is_insufficient_data()
    {
        Assert.Equal(TrendVerdict.InsufficientData, Judge(Series(2, 0.5, s => MiB * s).Take(4)).Verdict);
        var sameTime = Enumerable.Range(0, 10).Select(i => new TrendPoint(T0, i * 1000L));
        var t = Judge(sameTime);
        Assert.Equal(TrendVerdict.InsufficientData, t.Verdict);
        Assert.Contains("same time", t.Reason);
        Assert.Equal(TrendVerdict.InsufficientData, Judge(Array.Empty<TrendPoint>()).Verdict);
    }

    [Fact]
    public void Samples_out_of_order_are_sorted_by_time()
    {
        var points = Series(15, 0.5, s => MiB * s);
        var shuffled = points.OrderBy(_ => Guid.NewGuid()).ToList();
        var t = Judge(shuffled);
        Assert.Equal(TrendVerdict.Growing, t.Verdict);
        Assert.Equal(points[0].Value, t.First);
        Assert.Equal(points[^1].Value, t.Last);
    }

    [Fact]
    public void Long_series_are_reduced_and_stay_right()
    {
        // A day at one sample a second (86401 points): reduced to 1000 medians before the O(n^2) parts.
        var rnd = new Random(1);
        var t = Judge(Series(86400, 1, s => 10 * MiB * s / 3600 + 512 * 1024 * Gauss(rnd)));
        Assert.Equal(86401, t.Samples);
        Assert.Equal(TrendVerdict.Growing, t.Verdict);
        Assert.InRange(t.GrowthPerHour!.Value / MiB, 9.5, 10.5);
    }

    private static double Gauss(Random rnd) => Math.Sqrt(-2 * Math.Log(1 - rnd.NextDouble())) * Math.Cos(2 * Math.PI * rnd.NextDouble());
}
