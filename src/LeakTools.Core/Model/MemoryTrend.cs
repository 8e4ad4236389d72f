namespace LeakTools;

/// <summary>What a series of memory samples of one process says: is it growing?</summary>
public enum TrendVerdict
{
    /// <summary>Memory rises significantly, faster than -MinimumGrowth, and by more than it oscillates.</summary>
    Growing,
    /// <summary>No trend that passes the tests (flat, noise, or a sawtooth that returns to its floor).</summary>
    Stable,
    /// <summary>Memory falls significantly (the mirror image of Growing).</summary>
    Shrinking,
    /// <summary>Too few samples, or all at one instant.</summary>
    InsufficientData,
}

/// <summary>The trend of one process's memory over a series of samples (Measure-MemoryTrend,
/// Invoke-LeakMonitor). Sizes in bytes, rates in bytes per hour.</summary>
public sealed class MemoryTrend
{
    public int Id { get; set; }
    public string Name { get; set; } = "";
    /// <summary>The sample property judged (Pss unless -Property said otherwise).</summary>
    public string Property { get; set; } = "Pss";
    public int Samples { get; set; }
    /// <summary>Time from the first to the last sample.</summary>
    public TimeSpan Span { get; set; }
    /// <summary>Time of the first sample.</summary>
    public DateTime Start { get; set; }
    /// <summary>Time of the last sample.</summary>
    public DateTime End { get; set; }
    /// <summary>The property's value in the first sample.</summary>
    public long First { get; set; }
    /// <summary>The property's value in the last sample.</summary>
    public long Last { get; set; }
    public long Minimum { get; set; }
    public long Maximum { get; set; }
    /// <summary>Theil–Sen slope in bytes per hour: the median of all pairwise slopes, so one spike
    /// does not move it. Null with fewer than two distinct sample times.</summary>
    public long? GrowthPerHour { get; set; }
    /// <summary>The slope times the span: how much the trend line rises over the samples.</summary>
    public long? Growth { get; set; }
    /// <summary>How far the samples swing around the trend line (10th to 90th percentile of the
    /// residuals): the sawtooth amplitude, or the noise.</summary>
    public long? Oscillation { get; set; }
    /// <summary>Lowest value in the last quarter of the span minus the lowest in the first quarter:
    /// whether the floor (what the process never gives back) rose.</summary>
    public long? FloorRise { get; set; }
    /// <summary>Two-sided p-value of the Mann–Kendall trend test (tie-corrected): the chance of a
    /// monotonic trend this strong in trend-free data.</summary>
    public double? PValue { get; set; }
    /// <summary>Kendall's tau of the samples against time, -1..1.</summary>
    public double? Tau { get; set; }
    public TrendVerdict Verdict { get; set; }
    /// <summary>Why the verdict is what it is, in words.</summary>
    public string Reason { get; set; } = "";

    public override string ToString() => $"{Name} ({Id}) {Verdict}";
}
