using System.Diagnostics;
using System.Globalization;
using LeakTools.Core.Symbols;
using LeakTools.Tests.Shared;

namespace LeakTools.Core.Tests.Symbols;

/// <summary>The checked-in symbolizer samples (tests/samples/symbols).</summary>
public static class SymbolSamples
{
    public static string Path(string name) => System.IO.Path.Combine(RepoPaths.Samples, "symbols", name);
}

/// <summary>One address as addr2line -f -C -i printed it: frames innermost first.</summary>
public sealed record PeerFrame(string? Function, string? File, int? Line);

/// <summary>Match counts of one variant: an address counts for function/file/line when every
/// frame of its inline chain agrees (same number of frames, same values).</summary>
public sealed class ParityResult
{
    public string Variant = "";
    public int Addresses;
    public int FunctionMatches;
    public int FileMatches;
    public int LineMatches;
    public List<string> Differences = new();
    public Dictionary<string, int> Explained = new();
    public List<string> Unexplained = new();

    public double Rate(int n) => Addresses == 0 ? 0 : 100.0 * n / Addresses;

    public override string ToString() =>
        $"{Variant,-22} {Addresses,6} addresses  function {Rate(FunctionMatches),6:F2}%  file {Rate(FileMatches),6:F2}%  line {Rate(LineMatches),6:F2}%" +
        (Explained.Count == 0 ? "" : "  differences: " + string.Join(", ", Explained.Select(e => $"{e.Value} {e.Key}"))) +
        (Unexplained.Count == 0 ? "" : $"  UNEXPLAINED {Unexplained.Count}");
}

/// <summary>Compares the symbolizer with binutils addr2line over addresses spread through every
/// function of a binary.</summary>
public static class Addr2LineParity
{
    /// <summary>Addresses through every text symbol of <paramref name="binary"/> (from nm -S):
    /// the start, then every <c>step</c> bytes, and the last byte; about <paramref name="target"/> in all.</summary>
    public static List<ulong> SampleAddresses(string binary, int target)
    {
        var functions = new List<(ulong Start, ulong Size)>();
        foreach (string line in Tools.Run("nm", "-S", "--defined-only", binary).Split('\n'))
        {
            string[] p = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (p.Length < 4 || p[2] is not ("T" or "t" or "W" or "w")) continue;
            ulong start = ulong.Parse(p[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            ulong size = ulong.Parse(p[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            if (size > 0) functions.Add((start, size));
        }
        ulong total = (ulong)functions.Sum(f => (long)f.Size);
        ulong step = Math.Max(1, total / (ulong)target);
        var set = new SortedSet<ulong>();
        foreach (var (start, size) in functions)
        {
            for (ulong a = start; a < start + size; a += step) set.Add(a);
            set.Add(start + size - 1);
        }
        return set.ToList();
    }

    /// <summary>Runs addr2line -a -f -C -i once over every address.</summary>
    public static Dictionary<ulong, List<PeerFrame>> RunAddr2Line(string binary, IReadOnlyList<ulong> addresses, string tool = "addr2line", string flags = "-a -f -C -i")
    {
        var psi = new ProcessStartInfo(tool) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string f in flags.Split(' ')) psi.ArgumentList.Add(f);
        psi.ArgumentList.Add("-e");
        psi.ArgumentList.Add(binary);
        using var p = Process.Start(psi)!;
        var writer = Task.Run(() =>
        {
            foreach (ulong a in addresses) p.StandardInput.WriteLine($"0x{a:x}");
            p.StandardInput.Close();
        });
        var stderr = p.StandardError.ReadToEndAsync();
        string output = p.StandardOutput.ReadToEnd();
        writer.Wait();
        p.WaitForExit();
        return ParseAddr2Line(output);
    }

    public static Dictionary<ulong, List<PeerFrame>> ParseAddr2Line(string output)
    {
        var result = new Dictionary<ulong, List<PeerFrame>>();
        List<PeerFrame>? current = null;
        string? function = null;
        foreach (string raw in output.Split('\n'))
        {
            string line = raw.TrimEnd('\r');
            if (line.Length == 0) continue;
            if (line.StartsWith("0x", StringComparison.Ordinal) && function is null && ulong.TryParse(line.AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong address))
            {
                current = new List<PeerFrame>();
                result[address] = current;
                continue;
            }
            if (current is null) continue;
            if (function is null)
            {
                function = line;
                continue;
            }
            // file:line, maybe " (discriminator N)"
            string location = line;
            int disc = location.IndexOf(" (discriminator", StringComparison.Ordinal);
            if (disc >= 0) location = location[..disc];
            int colon = location.LastIndexOf(':');
            string file = colon >= 0 ? location[..colon] : location;
            string lineText = colon >= 0 ? location[(colon + 1)..] : "?";
            int? number = int.TryParse(lineText, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) ? n : null;
            current.Add(new PeerFrame(function == "??" ? null : function, file == "??" ? null : file, number));
            function = null;
        }
        return result;
    }

    /// <summary>Runs eu-addr2line -a -i (elfutils) over addresses: the location of each inline
    /// level, innermost first (file and line only).</summary>
    public static Dictionary<ulong, List<PeerFrame>> RunEuAddr2Line(string binary, IReadOnlyList<ulong> addresses)
    {
        if (addresses.Count == 0) return new();
        return ParseEuAddr2Line(Tools.Run("eu-addr2line", new[] { "-a", "-i", "-e", binary }.Concat(addresses.Select(a => $"0x{a:x}")).ToArray()));
    }

    public static Dictionary<ulong, List<PeerFrame>> ParseEuAddr2Line(string output)
    {
        var result = new Dictionary<ulong, List<PeerFrame>>();
        List<PeerFrame>? current = null;
        foreach (string line in output.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.StartsWith("0x", StringComparison.Ordinal) && ulong.TryParse(line.AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong a))
            {
                current = result[a] = new List<PeerFrame>();
                continue;
            }
            if (current is null) continue;
            string[] parts = line.Split(':');
            // file:line[:column]
            int? number = parts.Length >= 2 && int.TryParse(parts[1], out int n) ? n : null;
            current.Add(new PeerFrame(null, parts[0] == "??" ? null : parts[0], number));
        }
        return result;
    }

    /// <summary>Sorts each difference from addr2line into a known cause, checked per address:
    /// <list type="bullet">
    /// <item>"binutils DWARF 5 file bug": only a file name differs and elfutils' eu-addr2line names
    /// the same file as LeakTools (binutils 2.40 resolves rows that use a DWARF 5 line program's
    /// initial file register, 1, as file 0: the unit's main file instead of the header).</item>
    /// <item>"binutils inline-at-symbol-start name": only the innermost name differs; LeakTools names
    /// the inlined function, binutils the enclosing one, because an ELF symbol starts exactly where
    /// the inlined code does and binutils then renames the innermost DWARF function after it.</item>
    /// </list>
    /// Anything else is unexplained.</summary>
    public static void Explain(ParityResult result, ModuleSymbolizer module, Dictionary<ulong, List<PeerFrame>> peer, Func<IReadOnlyList<ulong>, Dictionary<ulong, List<PeerFrame>>> elfutils)
    {
        var mismatched = new List<ulong>();
        foreach (var (address, expected) in peer)
        {
            var actual = module.Resolve(address).Frames;
            if (!Same(expected, actual)) mismatched.Add(address);
        }
        var eu = mismatched.Count > 0 ? elfutils(mismatched) : new();
        foreach (ulong address in mismatched)
        {
            var expected = peer[address];
            var actual = module.Resolve(address).Frames;
            string? cause = null;
            if (expected.Count == actual.Count)
            {
                bool functionsSame = expected.Zip(actual).All(p => p.First.Function == p.Second.Function);
                bool linesSame = expected.Zip(actual).All(p => (p.First.Line ?? 0) == (p.Second.Line ?? 0));
                bool filesSame = expected.Zip(actual).All(p => p.First.File == p.Second.File);
                if (functionsSame && linesSame && !filesSame && eu.TryGetValue(address, out var euFrames) && euFrames.Count == actual.Count &&
                    euFrames.Zip(actual).All(p => p.First.File == p.Second.File))
                    cause = "binutils DWARF 5 file bug";
                else if (!functionsSame && linesSame && actual.Count >= 2 && actual[0].IsInline && expected[0].Function == actual[^1].Function &&
                         expected.Skip(1).Zip(actual.Skip(1)).All(p => p.First.Function == p.Second.Function))
                    cause = "binutils inline-at-symbol-start name";
            }
            if (cause is null)
            {
                result.Unexplained.Add(Describe(result.Variant, address, expected, actual));
                continue;
            }
            result.Explained[cause] = result.Explained.GetValueOrDefault(cause) + 1;
        }
    }

    private static bool Same(IReadOnlyList<PeerFrame> expected, IReadOnlyList<SymbolFrame> actual) =>
        expected.Count == actual.Count && expected.Zip(actual).All(p => p.First.Function == p.Second.Function && p.First.File == p.Second.File && (p.First.Line ?? 0) == (p.Second.Line ?? 0));

    private static string Describe(string variant, ulong address, IReadOnlyList<PeerFrame> expected, IReadOnlyList<SymbolFrame> actual)
    {
        string e = string.Join(" <- ", expected.Select(f => $"{f.Function} {Path.GetFileName(f.File ?? "??")}:{f.Line?.ToString() ?? "?"}"));
        string a = string.Join(" <- ", actual.Select(f => $"{f.Function} {Path.GetFileName(f.File ?? "??")}:{f.Line?.ToString() ?? "?"}"));
        return $"{variant} 0x{address:x}: addr2line [{e}]  ours [{a}]";
    }

    /// <summary>Compares <paramref name="module"/> with the peer's frames for each address.</summary>
    public static ParityResult Compare(string variant, ModuleSymbolizer module, Dictionary<ulong, List<PeerFrame>> peer, bool functionsOnly = false, bool outermostOnly = false)
    {
        var result = new ParityResult { Variant = variant };
        foreach (var (address, expectedAll) in peer.OrderBy(k => k.Key))
        {
            result.Addresses++;
            IReadOnlyList<SymbolFrame> actualAll = module.Resolve(address).Frames;
            IReadOnlyList<PeerFrame> expected = outermostOnly ? expectedAll.TakeLast(1).ToList() : expectedAll;
            IReadOnlyList<SymbolFrame> actual = outermostOnly ? actualAll.TakeLast(1).ToList() : actualAll;
            bool sameCount = expected.Count == actual.Count;
            bool fn = sameCount, file = sameCount, line = sameCount;
            for (int i = 0; sameCount && i < expected.Count; i++)
            {
                fn &= expected[i].Function == actual[i].Function;
                file &= expected[i].File == actual[i].File;
                // addr2line prints 0 for "no line" where it knows the file; LeakTools gives null.
                line &= (expected[i].Line ?? 0) == (actual[i].Line ?? 0);
            }
            if (fn) result.FunctionMatches++;
            if (file || functionsOnly) result.FileMatches++;
            if (line || functionsOnly) result.LineMatches++;
            if (!(fn && ((file && line) || functionsOnly)) && result.Differences.Count < 1000)
                result.Differences.Add(Describe(variant, address, expected, actual));
        }
        return result;
    }
}
