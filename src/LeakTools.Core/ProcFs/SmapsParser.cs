namespace LeakTools.Core.ProcFs;

/// <summary>One mapping of /proc/PID/smaps: the maps header and its fields.</summary>
public sealed class SmapsMapping
{
    public ulong Start { get; init; }
    public ulong End { get; init; }
    public string Permissions { get; init; } = "";
    public ulong Offset { get; init; }
    public string Device { get; init; } = "";
    public ulong Inode { get; init; }
    /// <summary>Path or pseudo-name ([heap], [stack], [vdso], "/x (deleted)"), empty for anonymous.</summary>
    public string Path { get; init; } = "";
    public SmapsValues Values { get; } = new();
    public string[] VmFlags { get; set; } = Array.Empty<string>();
}

/// <summary>Parses smaps and smaps_rollup text. Unknown numeric fields are kept by name; text
/// fields other than VmFlags are ignored. Never adds Pss_Anon/Pss_File/Pss_Shmem into Pss:
/// every field is stored under its own name only.</summary>
public static class SmapsParser
{
    /// <summary>Parses smaps_rollup: one header line, then fields.</summary>
    public static SmapsValues ParseRollup(ReadOnlySpan<byte> content)
    {
        var values = new SmapsValues();
        int hint = 0;
        while (!content.IsEmpty)
        {
            ReadOnlySpan<byte> line = ProcLineParser.NextLine(ref content);
            ParseField(line, values, ref hint, null);
        }
        return values;
    }

    /// <summary>Parses smaps: a header line per mapping followed by its fields.</summary>
    public static List<SmapsMapping> ParseMappings(ReadOnlySpan<byte> content)
    {
        var list = new List<SmapsMapping>();
        SmapsMapping? current = null;
        int hint = 0;
        while (!content.IsEmpty)
        {
            ReadOnlySpan<byte> line = ProcLineParser.NextLine(ref content);
            if (line.IsEmpty) continue;
            if (TryParseHeader(line, out SmapsMapping? header))
            {
                current = header;
                list.Add(header!);
                hint = 0;
                continue;
            }
            if (current is not null) ParseField(line, current.Values, ref hint, current);
        }
        return list;
    }

    /// <summary>Totals the fields of every mapping, as smaps_rollup would (for kernels without it).</summary>
    public static SmapsValues Total(ReadOnlySpan<byte> smapsContent)
    {
        var total = new SmapsValues();
        var one = new SmapsValues();
        bool any = false;
        int hint = 0;
        while (!smapsContent.IsEmpty)
        {
            ReadOnlySpan<byte> line = ProcLineParser.NextLine(ref smapsContent);
            if (line.IsEmpty) continue;
            if (IsHeader(line))
            {
                if (any) total.Accumulate(one);
                one = new SmapsValues();
                any = true;
                hint = 0;
                continue;
            }
            ParseField(line, one, ref hint, null);
        }
        if (any) total.Accumulate(one);
        return total;
    }

    private static void ParseField(ReadOnlySpan<byte> line, SmapsValues values, ref int hint, SmapsMapping? mapping)
    {
        if (!ProcLineParser.TrySplitKey(line, out ReadOnlySpan<byte> key, out ReadOnlySpan<byte> text)) return;
        if (!ProcLineParser.TryParseAmount(text, out long amount, out _))
        {
            if (mapping is not null && key.SequenceEqual("VmFlags"u8))
                mapping.VmFlags = ProcLineParser.Ascii(text).Split(' ', StringSplitOptions.RemoveEmptyEntries);
            return;
        }
        int index = SmapsFieldNames.Lookup(key, hint);
        if (index >= 0)
        {
            values.SetIndex(index, amount);
            hint = index + 1;
        }
        else
        {
            values.AddExtra(ProcLineParser.Ascii(key), amount);
        }
    }

    /// <summary>A maps header starts with "hex-hex " — a field line starts with "Name:".</summary>
    private static bool IsHeader(ReadOnlySpan<byte> line)
    {
        int space = line.IndexOf((byte)' ');
        ReadOnlySpan<byte> first = space < 0 ? line : line[..space];
        return first.IndexOf((byte)'-') > 0 && first[^1] != ':';
    }

    /// <summary>Parses "start-end perms offset dev inode   path".</summary>
    public static bool TryParseHeader(ReadOnlySpan<byte> line, out SmapsMapping? mapping)
    {
        mapping = null;
        if (!IsHeader(line)) return false;
        ReadOnlySpan<byte> rest = line;
        ReadOnlySpan<byte> range = NextToken(ref rest);
        ReadOnlySpan<byte> perms = NextToken(ref rest);
        ReadOnlySpan<byte> offset = NextToken(ref rest);
        ReadOnlySpan<byte> device = NextToken(ref rest);
        ReadOnlySpan<byte> inode = NextToken(ref rest);
        int dash = range.IndexOf((byte)'-');
        if (dash <= 0 ||
            !ProcLineParser.TryParseHex(range[..dash], out ulong start) ||
            !ProcLineParser.TryParseHex(range[(dash + 1)..], out ulong end) ||
            !ProcLineParser.TryParseHex(offset, out ulong off) ||
            !ProcLineParser.TryParseDecimal(inode, out long ino))
            return false;
        ReadOnlySpan<byte> path = rest.TrimStart((byte)' ');
        mapping = new SmapsMapping
        {
            Start = start,
            End = end,
            Permissions = ProcLineParser.Ascii(perms),
            Offset = off,
            Device = ProcLineParser.Ascii(device),
            Inode = (ulong)ino,
            Path = path.IsEmpty ? "" : ProcLineParser.Ascii(path),
        };
        return true;
    }

    private static ReadOnlySpan<byte> NextToken(ref ReadOnlySpan<byte> rest)
    {
        rest = rest.TrimStart((byte)' ');
        int space = rest.IndexOf((byte)' ');
        ReadOnlySpan<byte> token = space < 0 ? rest : rest[..space];
        rest = space < 0 ? default : rest[space..];
        return token;
    }
}
