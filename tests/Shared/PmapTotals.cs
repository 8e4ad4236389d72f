namespace LeakTools.Tests.Shared;

/// <summary>Reads the totals line of `pmap -X` output (KiB per column) by column name.</summary>
public sealed class PmapTotals : Dictionary<string, long>
{
    public static PmapTotals Parse(IReadOnlyList<string> lines)
    {
        string header = lines.First(l => l.TrimStart().StartsWith("Address", StringComparison.Ordinal));
        string totals = lines.Last(l => l.TrimEnd().EndsWith("KB", StringComparison.Ordinal));
        string[] names = header.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        string[] values = totals.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        // Header: Address Perm Offset Device Inode <numeric columns...> Mapping; totals: <numeric...> KB
        var numeric = names.Skip(5).Take(names.Length - 6).ToArray();
        var result = new PmapTotals();
        for (int i = 0; i < numeric.Length && i < values.Length - 1; i++) result[numeric[i]] = long.Parse(values[i]);
        return result;
    }
}
