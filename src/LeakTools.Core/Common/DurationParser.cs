using System.Globalization;

namespace LeakTools.Core;

/// <summary>The module's one rule for time values: a bare number is seconds (0.5 = half a second),
/// never TimeSpan ticks; a TimeSpan or "hh:mm:ss" is taken as is; "500ms", "10s", "5m", "2h", "1d"
/// carry their unit.</summary>
public static class DurationParser
{
    public static bool TryParse(string text, out TimeSpan value)
    {
        value = default;
        if (string.IsNullOrWhiteSpace(text)) return false;
        string s = text.Trim();
        if (double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double seconds))
            return TryFromSeconds(seconds, out value);

        (string suffix, double scale)[] units = { ("ms", 0.001), ("s", 1), ("m", 60), ("min", 60), ("h", 3600), ("d", 86400) };
        foreach (var (suffix, scale) in units.OrderByDescending(u => u.suffix.Length))
        {
            if (s.EndsWith(suffix, StringComparison.OrdinalIgnoreCase) &&
                double.TryParse(s[..^suffix.Length].Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out double n))
                return TryFromSeconds(n * scale, out value);
        }
        return TimeSpan.TryParse(s, CultureInfo.InvariantCulture, out value);
    }

    public static bool TryFromSeconds(double seconds, out TimeSpan value)
    {
        value = default;
        if (double.IsNaN(seconds) || double.IsInfinity(seconds) || Math.Abs(seconds) > TimeSpan.MaxValue.TotalSeconds) return false;
        value = TimeSpan.FromTicks((long)Math.Round(seconds * TimeSpan.TicksPerSecond));
        return true;
    }
}
