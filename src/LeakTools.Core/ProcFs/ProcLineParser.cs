using System.Text;

namespace LeakTools.Core.ProcFs;

/// <summary>Byte-level helpers for the "Key:   value kB" lines of /proc files (smaps, meminfo,
/// status). They work on spans so a whole-file parse allocates nothing per line.</summary>
internal static class ProcLineParser
{
    /// <summary>Cuts the next line off <paramref name="rest"/> (without its '\n').</summary>
    public static ReadOnlySpan<byte> NextLine(ref ReadOnlySpan<byte> rest)
    {
        int nl = rest.IndexOf((byte)'\n');
        ReadOnlySpan<byte> line;
        if (nl < 0)
        {
            line = rest;
            rest = default;
        }
        else
        {
            line = rest[..nl];
            rest = rest[(nl + 1)..];
        }
        return line;
    }

    /// <summary>If the line's first token ends with ':', returns the key before it and the text after.</summary>
    public static bool TrySplitKey(ReadOnlySpan<byte> line, out ReadOnlySpan<byte> key, out ReadOnlySpan<byte> value)
    {
        int colon = line.IndexOf((byte)':');
        if (colon <= 0 || line[..colon].IndexOfAny((byte)' ', (byte)'\t') >= 0)
        {
            key = value = default;
            return false;
        }
        key = line[..colon];
        value = line[(colon + 1)..].Trim((byte)' ').Trim((byte)'\t');
        return true;
    }

    /// <summary>Parses "12345 kB" (as bytes) or "12345" (as is). False when not a number.</summary>
    public static bool TryParseAmount(ReadOnlySpan<byte> text, out long value, out bool wasKb)
    {
        value = 0;
        wasKb = false;
        int i = 0;
        while (i < text.Length && (text[i] == ' ' || text[i] == '\t')) i++;
        int start = i;
        long v = 0;
        while (i < text.Length && (uint)(text[i] - '0') <= 9)
        {
            if (v > (long.MaxValue - 9) / 10) return false;
            v = v * 10 + (text[i] - '0');
            i++;
        }
        if (i == start) return false;
        while (i < text.Length && text[i] == ' ') i++;
        if (i < text.Length)
        {
            ReadOnlySpan<byte> unit = text[i..].TrimEnd((byte)' ');
            if (unit.SequenceEqual("kB"u8) && v <= long.MaxValue / 1024) { wasKb = true; v *= 1024; }
            else return false;
        }
        value = v;
        return true;
    }

    public static string Ascii(ReadOnlySpan<byte> bytes) => Encoding.UTF8.GetString(bytes);

    /// <summary>Parses a hexadecimal number (no prefix).</summary>
    public static bool TryParseHex(ReadOnlySpan<byte> text, out ulong value)
    {
        value = 0;
        if (text.IsEmpty || text.Length > 16) return false;
        foreach (byte b in text)
        {
            uint d;
            if ((uint)(b - '0') <= 9) d = (uint)(b - '0');
            else if ((uint)((b | 0x20) - 'a') <= 5) d = (uint)((b | 0x20) - 'a' + 10);
            else return false;
            value = (value << 4) | d;
        }
        return true;
    }

    public static bool TryParseDecimal(ReadOnlySpan<byte> text, out long value)
    {
        value = 0;
        if (text.IsEmpty) return false;
        foreach (byte b in text)
        {
            if ((uint)(b - '0') > 9 || value > (long.MaxValue - 9) / 10) return false;
            value = value * 10 + (b - '0');
        }
        return true;
    }
}
