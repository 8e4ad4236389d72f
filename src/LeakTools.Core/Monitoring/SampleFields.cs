using System.Globalization;

namespace LeakTools.Core.Monitoring;

/// <summary>The columns a stored <see cref="ProcessMemory"/> sample has, in property order — one
/// table for the CSV history (column = property name, as Export-Csv writes it), the SQLite history
/// and the conversion of Import-Csv rows.</summary>
public static class SampleFields
{
    public enum FieldKind { Int, Long, NullableLong, Text, Time }

    public sealed record Field(string Name, string Column, FieldKind Kind, Func<ProcessMemory, object?> Get, Action<ProcessMemory, object?> Set);

    public static IReadOnlyList<Field> All { get; } = new Field[]
    {
        new("Id", "pid", FieldKind.Int, m => m.Id, (m, v) => m.Id = (int)v!),
        new("Name", "name", FieldKind.Text, m => m.Name, (m, v) => m.Name = (string?)v ?? ""),
        new("CommandLine", "command_line", FieldKind.Text, m => m.CommandLine, (m, v) => m.CommandLine = (string?)v ?? ""),
        new("User", "user_name", FieldKind.Text, m => m.User, (m, v) => m.User = (string?)v ?? ""),
        new("Pss", "pss", FieldKind.Long, m => m.Pss, (m, v) => m.Pss = (long)v!),
        new("Rss", "rss", FieldKind.Long, m => m.Rss, (m, v) => m.Rss = (long)v!),
        new("Uss", "uss", FieldKind.Long, m => m.Uss, (m, v) => m.Uss = (long)v!),
        new("PrivateClean", "private_clean", FieldKind.Long, m => m.PrivateClean, (m, v) => m.PrivateClean = (long)v!),
        new("PrivateDirty", "private_dirty", FieldKind.Long, m => m.PrivateDirty, (m, v) => m.PrivateDirty = (long)v!),
        new("SharedClean", "shared_clean", FieldKind.Long, m => m.SharedClean, (m, v) => m.SharedClean = (long)v!),
        new("SharedDirty", "shared_dirty", FieldKind.Long, m => m.SharedDirty, (m, v) => m.SharedDirty = (long)v!),
        new("Swap", "swap", FieldKind.Long, m => m.Swap, (m, v) => m.Swap = (long)v!),
        new("SwapPss", "swap_pss", FieldKind.NullableLong, m => m.SwapPss, (m, v) => m.SwapPss = (long?)v),
        new("Anonymous", "anonymous", FieldKind.Long, m => m.Anonymous, (m, v) => m.Anonymous = (long)v!),
        new("PssDirty", "pss_dirty", FieldKind.NullableLong, m => m.PssDirty, (m, v) => m.PssDirty = (long?)v),
        new("PssAnon", "pss_anon", FieldKind.NullableLong, m => m.PssAnon, (m, v) => m.PssAnon = (long?)v),
        new("PssFile", "pss_file", FieldKind.NullableLong, m => m.PssFile, (m, v) => m.PssFile = (long?)v),
        new("PssShmem", "pss_shmem", FieldKind.NullableLong, m => m.PssShmem, (m, v) => m.PssShmem = (long?)v),
        new("Locked", "locked", FieldKind.Long, m => m.Locked, (m, v) => m.Locked = (long)v!),
        new("Source", "source", FieldKind.Text, m => m.Source, (m, v) => m.Source = (string?)v ?? ""),
        new("Timestamp", "time_ms", FieldKind.Time, m => m.Timestamp, (m, v) => m.Timestamp = (DateTime)v!),
    };

    private static readonly Dictionary<string, Field> s_byName = All.ToDictionary(f => f.Name, StringComparer.OrdinalIgnoreCase);

    public static Field? Find(string name) => s_byName.GetValueOrDefault(name);

    /// <summary>The numeric properties a trend can be measured on.</summary>
    public static IEnumerable<string> SizeProperties => All.Where(f => f.Kind is FieldKind.Long or FieldKind.NullableLong).Select(f => f.Name);

    /// <summary>Formats a value for a CSV cell: invariant numbers, round-trip ("o") local times,
    /// empty for null.</summary>
    public static string Format(object? value) => value switch
    {
        null => "",
        DateTime t => t.ToLocalTime().ToString("o", CultureInfo.InvariantCulture),
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };

    /// <summary>Parses a CSV cell for <paramref name="field"/>; false if it is not a value of that kind.</summary>
    public static bool TryParse(Field field, string? text, out object? value)
    {
        value = null;
        text = text?.Trim();
        switch (field.Kind)
        {
            case FieldKind.Text:
                value = text ?? "";
                return true;
            case FieldKind.NullableLong when string.IsNullOrEmpty(text):
                return true;
            case FieldKind.Int:
                if (int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int i)) { value = i; return true; }
                return false;
            case FieldKind.Long or FieldKind.NullableLong:
                if (TryParseSize(text, out long l)) { value = l; return true; }
                return false;
            case FieldKind.Time:
                if (TryParseTime(text, out DateTime t)) { value = t; return true; }
                return false;
        }
        return false;
    }

    /// <summary>A byte count: an integer, or a decimal number rounded (spreadsheets write 1.5E+07).</summary>
    public static bool TryParseSize(string? text, out long value)
    {
        value = 0;
        if (string.IsNullOrWhiteSpace(text)) return false;
        if (long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out value)) return true;
        if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) && double.IsFinite(d) && Math.Abs(d) < 9e18)
        {
            value = (long)Math.Round(d);
            return true;
        }
        return false;
    }

    /// <summary>A time as ISO 8601 (what the CSV history writes) or as Export-Csv writes a DateTime
    /// (the current culture's general format, then the invariant one); returned as local time.</summary>
    public static bool TryParseTime(string? text, out DateTime value)
    {
        value = default;
        if (string.IsNullOrWhiteSpace(text)) return false;
        if (DateTime.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out value) ||
            DateTime.TryParse(text, CultureInfo.CurrentCulture, DateTimeStyles.None, out value))
        {
            if (value.Kind == DateTimeKind.Utc) value = value.ToLocalTime();
            else if (value.Kind == DateTimeKind.Unspecified) value = DateTime.SpecifyKind(value, DateTimeKind.Local);
            return true;
        }
        return false;
    }
}
