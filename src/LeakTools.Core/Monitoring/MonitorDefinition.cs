using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace LeakTools.Core.Monitoring;

/// <summary>Everything a scheduled monitor is: the generated files carry it as a JSON comment, so
/// Get-LeakMonitor reads it back without parsing command lines, and the command line passes it to
/// Invoke-LeakMonitor as plain parameters.</summary>
public sealed record MonitorDefinition
{
    public string Name { get; init; } = "";
    public string[] ProcessName { get; init; } = Array.Empty<string>();
    public MonitorScheduler Scheduler { get; init; }
    public TimeSpan Interval { get; init; }
    public TimeSpan Window { get; init; }
    public TimeSpan Retention { get; init; }
    public string History { get; init; } = "";
    public MonitorAction Action { get; init; }
    public string? SnapshotDirectory { get; init; }
    public string? PrometheusTextfile { get; init; }
    public string Property { get; init; } = "Pss";
    public long MinimumGrowth { get; init; }
    public double Confidence { get; init; } = 0.95;
    public string SyslogTag { get; init; } = "leaktools";

    /// <summary>Default window: 48 runs, at least an hour — several periods of any sawtooth.</summary>
    public static TimeSpan DefaultWindow(TimeSpan interval) => TimeSpan.FromTicks(Math.Max(TimeSpan.TicksPerHour, interval.Ticks * 48));

    public static TimeSpan DefaultRetention => TimeSpan.FromDays(30);

    private static readonly JsonSerializerOptions s_json = new()
    {
        Converters = { new JsonStringEnumConverter() },
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public string ToJson() => JsonSerializer.Serialize(this, s_json);

    public static MonitorDefinition? FromJson(string json)
    {
        try
        {
            return JsonSerializer.Deserialize<MonitorDefinition>(json, s_json);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>The PowerShell that runs one round of this monitor.</summary>
    public string InvokeScript(string modulePath)
    {
        var parts = new List<string> { $"Import-Module {PowerShellQuote.Single(modulePath)};", "Invoke-LeakMonitor" };
        if (ProcessName.Length > 0) parts.Add("-Name " + string.Join(",", ProcessName.Select(PowerShellQuote.Single)));
        parts.Add("-MonitorName " + PowerShellQuote.Single(Name));
        parts.Add("-History " + PowerShellQuote.Single(History));
        parts.Add("-Window " + Seconds(Window));
        parts.Add("-Retention " + Seconds(Retention));
        if (Property != "Pss") parts.Add("-Property " + PowerShellQuote.Single(Property));
        if (MinimumGrowth != 0) parts.Add("-MinimumGrowth " + MinimumGrowth.ToString(CultureInfo.InvariantCulture));
        if (Confidence != 0.95) parts.Add("-Confidence " + Confidence.ToString("R", CultureInfo.InvariantCulture));
        if (SyslogTag != "leaktools") parts.Add("-SyslogTag " + PowerShellQuote.Single(SyslogTag));
        if (Action == MonitorAction.Snapshot)
        {
            parts.Add("-Action Snapshot");
            if (SnapshotDirectory is not null) parts.Add("-SnapshotDirectory " + PowerShellQuote.Single(SnapshotDirectory));
        }
        if (PrometheusTextfile is not null) parts.Add("-PrometheusTextfile " + PowerShellQuote.Single(PrometheusTextfile));
        return string.Join(" ", parts) + " | Out-Null";
    }

    private static string Seconds(TimeSpan t) => t.TotalSeconds.ToString("R", CultureInfo.InvariantCulture);
}

/// <summary>Quoting for generated PowerShell.</summary>
public static class PowerShellQuote
{
    /// <summary>A single-quoted literal: PowerShell takes the typographic single quotes as quotes
    /// too, so each of them is doubled like the ASCII one.</summary>
    public static string Single(string value)
    {
        var sb = new System.Text.StringBuilder("'");
        foreach (char c in value)
        {
            sb.Append(c);
            if (c is '\'' or '\u2018' or '\u2019' or '\u201A' or '\u201B') sb.Append(c);
        }
        return sb.Append('\'').ToString();
    }
}
