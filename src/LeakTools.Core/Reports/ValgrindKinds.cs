using System.Globalization;
using System.Text.RegularExpressions;

namespace LeakTools.Core.Reports;

/// <summary>Memcheck's finding kinds: its XML &lt;kind&gt; names, the heading lines its text logs
/// print for them, and the loss-record heading with its figures.</summary>
public static partial class ValgrindKinds
{
    private static readonly Dictionary<string, LeakKind> s_xml = new(StringComparer.Ordinal)
    {
        ["Leak_DefinitelyLost"] = LeakKind.DefinitelyLost,
        ["Leak_IndirectlyLost"] = LeakKind.IndirectlyLost,
        ["Leak_PossiblyLost"] = LeakKind.PossiblyLost,
        ["Leak_StillReachable"] = LeakKind.StillReachable,
        ["InvalidRead"] = LeakKind.InvalidRead,
        ["InvalidWrite"] = LeakKind.InvalidWrite,
        ["InvalidFree"] = LeakKind.InvalidFree,
        ["MismatchedFree"] = LeakKind.MismatchedFree,
        ["InvalidJump"] = LeakKind.InvalidJump,
        ["UninitCondition"] = LeakKind.UninitCondition,
        ["UninitValue"] = LeakKind.UninitValue,
        ["SyscallParam"] = LeakKind.SyscallParam,
        ["Overlap"] = LeakKind.Overlap,
        ["InvalidMemPool"] = LeakKind.InvalidMemPool,
        ["ClientCheck"] = LeakKind.ClientCheck,
        ["FishyValue"] = LeakKind.FishyValue,
        ["ReallocSizeZero"] = LeakKind.ReallocSizeZero,
        ["CoreMemError"] = LeakKind.CoreMemError,
    };

    // Text headings of memcheck's errors (mc_errors.c), in the order they are tried.
    private static readonly (Regex Heading, string XmlKind)[] s_text =
    {
        (new Regex(@"^Invalid read of size \d+", RegexOptions.CultureInvariant), "InvalidRead"),
        (new Regex(@"^Invalid write of size \d+", RegexOptions.CultureInvariant), "InvalidWrite"),
        (new Regex(@"^Invalid free\(\)", RegexOptions.CultureInvariant), "InvalidFree"),
        (new Regex(@"^Mismatched free\(\)", RegexOptions.CultureInvariant), "MismatchedFree"),
        (new Regex(@"^Jump to the invalid address", RegexOptions.CultureInvariant), "InvalidJump"),
        (new Regex(@"^Conditional jump or move depends on uninitialised value", RegexOptions.CultureInvariant), "UninitCondition"),
        (new Regex(@"^Use of uninitialised value of size", RegexOptions.CultureInvariant), "UninitValue"),
        (new Regex(@"^Syscall param ", RegexOptions.CultureInvariant), "SyscallParam"),
        (new Regex(@"^Source and destination overlap in ", RegexOptions.CultureInvariant), "Overlap"),
        (new Regex(@"^Illegal memory pool address", RegexOptions.CultureInvariant), "InvalidMemPool"),
        (new Regex(@"^(Unaddressable|Uninitialised) byte\(s\) found during client check request", RegexOptions.CultureInvariant), "ClientCheck"),
        (new Regex(@"^Argument '.*' of function .* has a fishy", RegexOptions.CultureInvariant), "FishyValue"),
        (new Regex(@"^realloc\(\) with size 0", RegexOptions.CultureInvariant), "ReallocSizeZero"),
        (new Regex(@" contains unaddressable byte\(s\)$", RegexOptions.CultureInvariant), "CoreMemError"),
    };

    public static LeakKind FromXml(string? kind) =>
        kind is not null && s_xml.TryGetValue(kind, out LeakKind k) ? k : LeakKind.Unknown;

    public static bool IsLeak(LeakKind kind) => kind is LeakKind.DefinitelyLost or LeakKind.IndirectlyLost or LeakKind.PossiblyLost or LeakKind.StillReachable;

    /// <summary>The XML kind name of a text heading, or null when it is not a memcheck error heading.</summary>
    public static string? XmlKindOfHeading(string heading)
    {
        foreach (var (regex, xmlKind) in s_text)
        {
            if (regex.IsMatch(heading)) return xmlKind;
        }
        return null;
    }

    // "1,024 (512 direct, 512 indirect) bytes in 1 blocks are definitely lost in loss record 3 of 4",
    // with the deltas of incremental leak checks ("16 (+16) bytes in 1 (+1) blocks ... in new loss record").
    [GeneratedRegex(@"^(?<bytes>[\d,]+)(?: \([+-][\d,]+\))?(?: \((?<direct>[\d,]+)(?: \([+-][\d,]+\))? direct, (?<indirect>[\d,]+)(?: \([+-][\d,]+\))? indirect\))? bytes in (?<blocks>[\d,]+)(?: \([+-][\d,]+\))? blocks are (?<kind>definitely lost|indirectly lost|possibly lost|still reachable) in (?:[a-z]+ )?loss record (?<n>[\d,]+) of (?<of>[\d,]+)", RegexOptions.CultureInvariant)]
    private static partial Regex LossRecordRegex();

    /// <summary>Reads a loss-record heading into <paramref name="record"/>; false when the text is not one.</summary>
    public static bool TryParseLossRecord(string text, LeakRecord record)
    {
        Match m = LossRecordRegex().Match(text);
        if (!m.Success) return false;
        (record.Kind, record.ValgrindKind) = m.Groups["kind"].Value switch
        {
            "definitely lost" => (LeakKind.DefinitelyLost, "Leak_DefinitelyLost"),
            "indirectly lost" => (LeakKind.IndirectlyLost, "Leak_IndirectlyLost"),
            "possibly lost" => (LeakKind.PossiblyLost, "Leak_PossiblyLost"),
            _ => (LeakKind.StillReachable, "Leak_StillReachable"),
        };
        record.Bytes = Number(m.Groups["bytes"].Value);
        record.IndirectBytes = m.Groups["indirect"].Success ? Number(m.Groups["indirect"].Value) : 0;
        record.Blocks = Number(m.Groups["blocks"].Value);
        record.LossRecord = (int)Number(m.Groups["n"].Value);
        record.LossRecordCount = (int)Number(m.Groups["of"].Value);
        return true;
    }

    /// <summary>A valgrind number: decimal, with thousands separators ("28,226,706").</summary>
    public static long Number(string text) => long.Parse(text.Replace(",", ""), NumberStyles.None, CultureInfo.InvariantCulture);

    public static bool TryNumber(string? text, out long value)
    {
        value = 0;
        return text is not null && long.TryParse(text.Trim().Replace(",", ""), NumberStyles.None, CultureInfo.InvariantCulture, out value);
    }

    /// <summary>"0x4C2B975" as a number.</summary>
    public static bool TryHex(string? text, out ulong value)
    {
        value = 0;
        if (text is null) return false;
        ReadOnlySpan<char> s = text.AsSpan().Trim();
        if (s.StartsWith("0x", StringComparison.OrdinalIgnoreCase)) s = s[2..];
        return ulong.TryParse(s, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value);
    }
}
