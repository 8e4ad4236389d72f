using System.Globalization;

namespace LeakTools.Core.Monitoring;

/// <summary>How strict a trend verdict is.</summary>
public sealed record TrendOptions
{
    /// <summary>Slower growth than this (bytes per hour) is Stable however significant.</summary>
    public double MinimumGrowthPerHour { get; init; }

    /// <summary>1 - the p-value a trend must beat (0.95: p &lt; 0.05).</summary>
    public double Confidence { get; init; } = 0.95;

    /// <summary>A rise or fall smaller than this over the whole span (bytes) is Stable: Pss is
    /// printed in KiB and moves by a few KiB whenever other processes map or unmap the libraries it
    /// shares, so 16 pages is below what the figure can tell.</summary>
    public long MinimumChange { get; init; } = 64 * 1024;

    /// <summary>Fewer samples than this give InsufficientData.</summary>
    public int MinimumSamples { get; init; } = 5;

    /// <summary>Longer series are reduced to this many points (medians of consecutive runs of
    /// samples) before the O(n²) statistics.</summary>
    public int MaximumPoints { get; init; } = 1000;
}

/// <summary>One timestamped value of a series.</summary>
public readonly record struct TrendPoint(DateTime Time, long Value);

/// <summary>Judges whether a process's memory grows. Growing needs all of:
/// <list type="number">
/// <item>a significant monotonic trend (Mann–Kendall, p below 1 - Confidence);</item>
/// <item>a robust slope (Theil–Sen) of at least MinimumGrowth per hour, and a change over the
///   span of at least <see cref="TrendOptions.MinimumChange"/> (64 KiB);</item>
/// <item>the rise of the trend line over the span larger than the swing around it (the 10th to
///   90th percentile of the residuals): a sawtooth that allocates and frees rises fast inside each
///   tooth, but over the window its line rises less than the tooth is tall;</item>
/// <item>a risen floor: the lowest value of the last quarter above the lowest of the first
///   quarter by half that swing, so a window that catches a sawtooth mid-tooth is not a leak.</item>
/// </list>
/// Memory that a process never gives back lifts its floor; a sawtooth returns to its floor.
/// Shrinking is the mirror image.</summary>
public static class TrendAnalyzer
{
    public static MemoryTrend Analyze(int id, string name, string property, IEnumerable<TrendPoint> samples, TrendOptions? options = null)
    {
        options ??= new TrendOptions();
        // Stable sort by time: samples of one second (CSV keeps whole seconds) stay in input order.
        TrendPoint[] points = samples.Select((p, i) => (p, i)).OrderBy(t => t.p.Time).ThenBy(t => t.i).Select(t => t.p).ToArray();
        var trend = new MemoryTrend { Id = id, Name = name, Property = property, Samples = points.Length };
        if (points.Length == 0)
        {
            trend.Verdict = TrendVerdict.InsufficientData;
            trend.Reason = "No samples.";
            return trend;
        }
        trend.Start = points[0].Time;
        trend.End = points[^1].Time;
        trend.Span = trend.End - trend.Start;
        trend.First = points[0].Value;
        trend.Last = points[^1].Value;
        trend.Minimum = points.Min(p => p.Value);
        trend.Maximum = points.Max(p => p.Value);

        if (points.Length < Math.Max(3, options.MinimumSamples) || trend.Span <= TimeSpan.Zero)
        {
            trend.Verdict = TrendVerdict.InsufficientData;
            trend.Reason = trend.Span <= TimeSpan.Zero && points.Length > 1
                ? "All samples have the same time."
                : $"{points.Length} sample(s); at least {Math.Max(3, options.MinimumSamples)} are needed.";
            return trend;
        }

        (double[] x, double[] y) = Reduce(points, options.MaximumPoints);
        double slope = TrendStatistics.TheilSenSlope(x, y); // bytes per second
        MannKendallResult mk = TrendStatistics.MannKendall(y);
        double span = trend.Span.TotalSeconds;

        var residuals = new double[points.Length];
        double t0 = points[0].Time.Ticks;
        for (int i = 0; i < points.Length; i++)
            residuals[i] = points[i].Value - slope * ((points[i].Time.Ticks - t0) / TimeSpan.TicksPerSecond);
        double oscillation = TrendStatistics.Quantile(residuals.AsSpan(), 0.9) - TrendStatistics.Quantile(residuals.AsSpan(), 0.1);
        double growth = slope * span;
        double floorRise = FloorRise(points);

        trend.GrowthPerHour = Round(slope * 3600);
        trend.Growth = Round(growth);
        trend.Oscillation = Round(oscillation);
        trend.FloorRise = Round(floorRise);
        trend.PValue = mk.PValue;
        trend.Tau = mk.Tau;
        (trend.Verdict, trend.Reason) = Judge(slope, growth, oscillation, floorRise, mk, options);
        return trend;
    }

    private static (TrendVerdict, string) Judge(double slope, double growth, double oscillation, double floorRise, MannKendallResult mk, TrendOptions options)
    {
        double alpha = 1 - options.Confidence;
        int sign = Math.Sign(slope);
        string p = mk.PValue.ToString("G2", CultureInfo.InvariantCulture);
        if (mk.PValue >= alpha || sign == 0 || Math.Sign(mk.S) != sign)
            return (TrendVerdict.Stable, $"No significant trend (Mann-Kendall p={p}, needs < {alpha.ToString("G2", CultureInfo.InvariantCulture)}).");

        string direction = sign > 0 ? "rises" : "falls";
        double perHour = Math.Abs(slope) * 3600;
        if (perHour < options.MinimumGrowthPerHour)
            return (TrendVerdict.Stable, $"Memory {direction} {Bytes(perHour)}/h, below -MinimumGrowth {Bytes(options.MinimumGrowthPerHour)}/h (p={p}).");
        if (Math.Abs(growth) < options.MinimumChange)
            return (TrendVerdict.Stable, $"Memory {direction} only {Bytes(Math.Abs(growth))} over the span, less than {Bytes(options.MinimumChange)}: within what page sharing with other processes moves it (p={p}).");
        if (Math.Abs(growth) <= oscillation)
            return (TrendVerdict.Stable, $"The trend line {direction} {Bytes(Math.Abs(growth))} over the span, less than the samples swing around it ({Bytes(oscillation)}): an oscillation such as allocate-and-free, not a lasting change (p={p}).");
        if (sign * floorRise <= oscillation / 2)
            return (TrendVerdict.Stable, $"The floor did not follow: the lowest value of the last quarter is {Bytes(floorRise)} from the first quarter's, swing {Bytes(oscillation)}; the memory comes back (p={p}).");

        return sign > 0
            ? (TrendVerdict.Growing, $"Grows {Bytes(perHour)}/h (Theil-Sen), Mann-Kendall p={p}; the floor rose {Bytes(floorRise)}, more than the swing of {Bytes(oscillation)}.")
            : (TrendVerdict.Shrinking, $"Shrinks {Bytes(perHour)}/h (Theil-Sen), Mann-Kendall p={p}; the floor fell {Bytes(-floorRise)}, more than the swing of {Bytes(oscillation)}.");
    }

    /// <summary>Lowest value in the last quarter of the span minus the lowest in the first quarter.</summary>
    private static double FloorRise(TrendPoint[] points)
    {
        long start = points[0].Time.Ticks, span = points[^1].Time.Ticks - start;
        long firstEnd = start + span / 4, lastStart = start + span - span / 4;
        long firstMin = long.MaxValue, lastMin = long.MaxValue;
        foreach (TrendPoint p in points)
        {
            if (p.Time.Ticks <= firstEnd) firstMin = Math.Min(firstMin, p.Value);
            if (p.Time.Ticks >= lastStart) lastMin = Math.Min(lastMin, p.Value);
        }
        return (double)lastMin - firstMin;
    }

    /// <summary>Seconds since the first point and values; series longer than <paramref name="max"/>
    /// become medians of consecutive runs of samples.</summary>
    private static (double[] X, double[] Y) Reduce(TrendPoint[] points, int max)
    {
        long t0 = points[0].Time.Ticks;
        double Seconds(TrendPoint p) => (p.Time.Ticks - t0) / (double)TimeSpan.TicksPerSecond;
        if (points.Length <= max)
            return (points.Select(Seconds).ToArray(), points.Select(p => (double)p.Value).ToArray());

        var x = new double[max];
        var y = new double[max];
        for (int b = 0; b < max; b++)
        {
            int from = (int)((long)b * points.Length / max), to = (int)((long)(b + 1) * points.Length / max);
            double[] xs = new double[to - from], ys = new double[to - from];
            for (int i = from; i < to; i++)
            {
                xs[i - from] = Seconds(points[i]);
                ys[i - from] = points[i].Value;
            }
            x[b] = TrendStatistics.Median(xs);
            y[b] = TrendStatistics.Median(ys);
        }
        return (x, y);
    }

    private static long? Round(double value) => double.IsFinite(value) ? (long)Math.Round(value) : null;

    /// <summary>Bytes as a short human figure (KiB/MiB/GiB), for reasons.</summary>
    public static string Bytes(double bytes)
    {
        double a = Math.Abs(bytes);
        return a >= 1L << 30 ? FormattableString.Invariant($"{bytes / (1L << 30):0.##} GiB")
             : a >= 1 << 20 ? FormattableString.Invariant($"{bytes / (1 << 20):0.##} MiB")
             : a >= 1 << 10 ? FormattableString.Invariant($"{bytes / (1 << 10):0.#} KiB")
             : FormattableString.Invariant($"{bytes:0} B");
    }
}
