using System.Diagnostics;
using System.Globalization;
using LeakTools.Core.Symbols;
using LeakTools.Tests.Shared;

namespace LeakTools.Core.Tests.Symbols;

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

    public double Rate(int n) => Addresses == 0 ? 0 : 100.0 * n / Addresses;

    public override string ToString() =>
        $"{Variant,-22} {Addresses,6} addresses  function {Rate(FunctionMatches),6:F2}%  file {Rate(FileMatches),6:F2}%  line {Rate(LineMatches),6:F2}%";
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
            if (!(fn && ((file && line) || functionsOnly)) && result.Differences.Count < 20000)
            {
                string e = string.Join(" <- ", expected.Select(f => $"{f.Function} {Path.GetFileName(f.File ?? "??")}:{f.Line?.ToString() ?? "?"}"));
                string a = string.Join(" <- ", actual.Select(f => $"{f.Function} {Path.GetFileName(f.File ?? "??")}:{f.Line?.ToString() ?? "?"}"));
                result.Differences.Add($"{variant} 0x{address:x}: addr2line [{e}]  ours [{a}]");
            }
        }
        return result;
    }
}
