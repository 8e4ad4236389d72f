using System.Text.RegularExpressions;

namespace LeakTools.Core.Reports;

/// <summary>Where valgrind loaded each object: from the "Reading syms from X" / "svma 0x..., avma
/// 0x..." pairs of its -v -v commentary. With it a frame's address (valgrind's ip, a runtime
/// address) becomes the object's file virtual address, what addr2line -e and Resolve-Address -Path
/// take: ModuleOffset = ip - (avma - svma). Without an entry, a non-PIE executable (ET_EXEC) is
/// loaded at its file addresses, so ModuleOffset = ip; for a PIE or shared object whose file is on
/// this machine, the frames valgrind named tell the load address (<see cref="LearnFromNamedFrames"/>);
/// otherwise it stays unknown (0).</summary>
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

    /// <summary>For objects without a known load address: the load bias that puts every frame
    /// valgrind named (not inlined) inside its function's symbol in the object's file. The bias is
    /// page-aligned; it is taken only when exactly one page-aligned value fits all those frames.</summary>
    public void LearnFromNamedFrames(IEnumerable<StackFrame> frames)
    {
        foreach (var group in frames.Where(f => f.Module.Length > 0 && f.Function is not null && !f.IsInline).GroupBy(f => f.Module))
        {
            string module = group.Key;
            if (_loads.ContainsKey(module) || module.Contains("/vgpreload_", StringComparison.Ordinal)) continue;
            if (!_fixedAddress.TryGetValue(module, out bool isExec)) _fixedAddress[module] = isExec = IsFixedAddressExecutable(module);
            if (isExec || !File.Exists(module)) continue;
            var symbols = ElfFunctionSymbols.Read(module);
            long low = long.MinValue, high = long.MaxValue; // the bias lies in (low, high]
            bool any = false;
            foreach (StackFrame f in group.DistinctBy(f => f.Address))
            {
                string name = f.Function!.Split('@')[0]; // "memcpy@@GLIBC_2.14"
                if (!symbols.TryGetValue(name, out var sym) || f.Address > long.MaxValue || sym.Value > long.MaxValue || sym.Size > int.MaxValue) continue;
                // value + bias <= ip < value + size + bias
                long hi = (long)f.Address - (long)sym.Value, lo = hi - (long)sym.Size;
                (low, high, any) = (Math.Max(low, lo), Math.Min(high, hi), true);
            }
            if (!any) continue;
            long first = ((low >> 12) + 1) << 12; // the smallest page-aligned value above low
            if (first < 0 || first > high || first + 0x1000 <= high) continue; // none, or more than one, fits
            ulong bias = (ulong)first;
            _loads[module] = new List<(ulong, ulong)> { (0, bias) };
        }
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
