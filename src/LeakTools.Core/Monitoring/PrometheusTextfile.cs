using System.Globalization;
using System.Text;

namespace LeakTools.Core.Monitoring;

/// <summary>node_exporter's textfile collector format: gauges per monitored process (memory by
/// kind, growth rate, p-value, growing flag) and per monitor (processes matched, last run). The
/// file is written beside its final name and renamed over it, so the collector never reads half a
/// file; the temporary name does not end in .prom, so the collector skips it.</summary>
public static class PrometheusTextfile
{
    public static string Render(string monitor, IReadOnlyList<ProcessMemory> samples, IReadOnlyList<MemoryTrend> trends, DateTime runTime, string status)
    {
        var sb = new StringBuilder();
        string m = Label(monitor);

        sb.Append("# HELP leaktools_process_memory_bytes Memory of a monitored process by kind (pss, rss, uss, swap), from /proc/PID/smaps_rollup.\n");
        sb.Append("# TYPE leaktools_process_memory_bytes gauge\n");
        foreach (ProcessMemory s in samples)
        {
            foreach (var (kind, value) in new[] { ("pss", s.Pss), ("rss", s.Rss), ("uss", s.Uss), ("swap", s.Swap) })
                sb.Append($"leaktools_process_memory_bytes{{monitor=\"{m}\",name=\"{Label(s.Name)}\",pid=\"{s.Id}\",kind=\"{kind}\"}} {Num(value)}\n");
        }

        var judged = trends.Where(t => t.GrowthPerHour is not null).ToList();
        sb.Append("# HELP leaktools_memory_growth_bytes_per_hour Robust (Theil-Sen) growth rate of the judged memory figure over the monitor's window.\n");
        sb.Append("# TYPE leaktools_memory_growth_bytes_per_hour gauge\n");
        foreach (MemoryTrend t in judged)
            sb.Append($"leaktools_memory_growth_bytes_per_hour{{{TrendLabels(m, t)}}} {Num(t.GrowthPerHour!.Value)}\n");
        sb.Append("# HELP leaktools_memory_trend_p_value Mann-Kendall p-value of the trend (small: a real trend).\n");
        sb.Append("# TYPE leaktools_memory_trend_p_value gauge\n");
        foreach (MemoryTrend t in judged)
            sb.Append($"leaktools_memory_trend_p_value{{{TrendLabels(m, t)}}} {Num(t.PValue ?? 1)}\n");
        sb.Append("# HELP leaktools_memory_growing 1 when LeakTools judges the process's memory as Growing, else 0.\n");
        sb.Append("# TYPE leaktools_memory_growing gauge\n");
        foreach (MemoryTrend t in trends)
            sb.Append($"leaktools_memory_growing{{{TrendLabels(m, t)}}} {(t.Verdict == TrendVerdict.Growing ? 1 : 0)}\n");

        sb.Append("# HELP leaktools_monitor_processes Processes the monitor's last run matched (0: not running).\n");
        sb.Append("# TYPE leaktools_monitor_processes gauge\n");
        sb.Append($"leaktools_monitor_processes{{monitor=\"{m}\"}} {samples.Select(s => s.Id).Distinct().Count()}\n");
        sb.Append("# HELP leaktools_monitor_last_run_timestamp_seconds When the monitor last ran (Unix time).\n");
        sb.Append("# TYPE leaktools_monitor_last_run_timestamp_seconds gauge\n");
        sb.Append($"leaktools_monitor_last_run_timestamp_seconds{{monitor=\"{m}\",status=\"{Label(status)}\"}} {Num(new DateTimeOffset(runTime).ToUnixTimeMilliseconds() / 1000.0)}\n");
        return sb.ToString();
    }

    public static void Write(string path, string text)
    {
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full)!;
        string temp = Path.Combine(dir, "." + Path.GetFileName(full) + "." + Environment.ProcessId + ".tmp");
        try
        {
            Directory.CreateDirectory(dir);
            using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
            {
                stream.Write(Encoding.UTF8.GetBytes(text));
                stream.Flush(flushToDisk: true);
            }
            File.SetUnixFileMode(temp, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
            File.Move(temp, full, overwrite: true);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            try { File.Delete(temp); } catch (Exception cleanup) when (cleanup is IOException or UnauthorizedAccessException) { }
            throw new LeakToolsException(FailureKind.AccessDenied, "PrometheusTextfileFailed", $"Writing the Prometheus textfile {full} failed: {ex.Message}", full, ex);
        }
    }

    private static string TrendLabels(string monitor, MemoryTrend t) =>
        $"monitor=\"{monitor}\",name=\"{Label(t.Name)}\",pid=\"{t.Id}\",property=\"{Label(t.Property.ToLowerInvariant())}\"";

    /// <summary>Label value escaping of the exposition format: backslash, double quote, line feed.</summary>
    public static string Label(string value) => value.Replace("\\", "\\\\").Replace("\"", "\\\"").Replace("\n", "\\n");

    private static string Num(double value) => value.ToString("R", CultureInfo.InvariantCulture);

    private static string Num(long value) => value.ToString(CultureInfo.InvariantCulture);
}
