using System.Text.RegularExpressions;

namespace LeakTools.Core.Reports;

/// <summary>Where valgrind loaded each object: from the "Reading syms from X" / "svma 0x..., avma
/// 0x..." pairs of its -v -v commentary. With it a frame's address (valgrind's ip, a runtime
/// address) becomes the object's file virtual address, what addr2line -e and Resolve-Address -Path
/// take: ModuleOffset = ip - (avma - svma). Without an entry, a non-PIE executable (ET_EXEC) is
/// loaded at its file addresses, so ModuleOffset = ip; for other objects it stays unknown (0).</summary>
public sealed partial class ModuleLoadMap
{
    private readonly Dictionary<string, List<(ulong Svma, ulong Avma)>> _loads = new(StringComparer.Ordinal);
    private readonly Dictionary<string, bool> _fixedAddress = new(StringComparer.Ordinal);
    private string? _pendingPath;

    public static ModuleLoadMap Empty => new();

    /// <summary>Objects with a known load address.</summary>
    public IEnumerable<string> Modules => _loads.Keys;

    [GeneratedRegex(@"^Reading syms from (?<path>.+?)\s*$", RegexOptions.CultureInvariant)]
    private static partial Regex ReadingSyms();

    [GeneratedRegex(@"^svma 0x(?<svma>[0-9a-fA-F]+), avma 0x(?<avma>[0-9a-fA-F]+)", RegexOptions.CultureInvariant)]
    private static partial Regex SvmaAvma();

    /// <summary>Feeds one line of valgrind's commentary with its "--PID--" prefix already removed.</summary>
    public void AddCommentaryLine(string content)
    {
        string text = content.Trim();
        Match m = ReadingSyms().Match(text);
        if (m.Success)
        {
            _pendingPath = m.Groups["path"].Value;
            return;
        }
        if (_pendingPath is null) return;
        m = SvmaAvma().Match(text);
        if (!m.Success) return;
        ValgrindKinds.TryHex(m.Groups["svma"].Value, out ulong svma);
        ValgrindKinds.TryHex(m.Groups["avma"].Value, out ulong avma);
        if (!_loads.TryGetValue(_pendingPath, out var list)) _loads[_pendingPath] = list = new();
        list.Add((svma, avma));
        _pendingPath = null;
    }

    /// <summary>Reads a whole commentary log (valgrind --log-file with -v -v).</summary>
    public static ModuleLoadMap FromLog(IEnumerable<string> lines)
    {
        var map = new ModuleLoadMap();
        foreach (string line in lines)
        {
            if (ValgrindTextParser.TrySplitPrefix(line, out _, out _, out string content)) map.AddCommentaryLine(content);
        }
        return map;
    }

    /// <summary>The file virtual address of <paramref name="address"/> in <paramref name="module"/>, or null when unknown.</summary>
    public ulong? FileAddress(string module, ulong address)
    {
        if (module.Length == 0) return null;
        if (_loads.TryGetValue(module, out var loads))
        {
            // The load at the highest text address not above the ip (an object dlopen'ed twice).
            var best = loads[0];
            foreach (var l in loads)
            {
                if (l.Avma <= address && (best.Avma > address || l.Avma > best.Avma)) best = l;
            }
            return address - (best.Avma - best.Svma);
        }
        if (!_fixedAddress.TryGetValue(module, out bool isExec)) _fixedAddress[module] = isExec = IsFixedAddressExecutable(module);
        return isExec ? address : null;
    }

    /// <summary>True for an ELF ET_EXEC file (a non-PIE executable: loaded at its own addresses).</summary>
    public static bool IsFixedAddressExecutable(string path)
    {
        try
        {
            using var f = File.OpenRead(path);
            Span<byte> h = stackalloc byte[18];
            if (f.ReadAtLeast(h, h.Length, throwOnEndOfStream: false) < h.Length) return false;
            if (h[0] != 0x7f || h[1] != (byte)'E' || h[2] != (byte)'L' || h[3] != (byte)'F') return false;
            int type = h[5] == 2 ? (h[16] << 8) | h[17] : h[16] | (h[17] << 8);
            return type == 2; // ET_EXEC
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }
}
