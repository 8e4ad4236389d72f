using System.Globalization;
using System.Text.RegularExpressions;
using LeakTools.Core.Symbols;
using LeakTools.Core.Tracing.Unwinding;
using LeakTools.Tests.Shared;
using Xunit;

namespace LeakTools.Core.Tests.Tracing;

/// <summary>The CFI reader against binutils: every row `readelf -wF` prints (CFA rule, saved
/// registers, return address) must be the row CallFrameInfo computes for that address.</summary>
public sealed class CallFrameInfoTests
{
    private static readonly Dictionary<string, int> s_registers = new()
    {
        ["rax"] = 0, ["rdx"] = 1, ["rcx"] = 2, ["rbx"] = 3, ["rsi"] = 4, ["rdi"] = 5, ["rbp"] = 6, ["rsp"] = 7,
        ["r8"] = 8, ["r9"] = 9, ["r10"] = 10, ["r11"] = 11, ["r12"] = 12, ["r13"] = 13, ["r14"] = 14, ["r15"] = 15, ["ra"] = 16,
    };

    public static IEnumerable<object[]> Files()
    {
        foreach (string f in new[] { "dwarf5-O2.elf", "dwarf4-O2.elf", "cpp-O2.elf", "dwarf2-O1.elf" }) yield return new object[] { Path.Combine(RepoPaths.Samples, "symbols", f) };
        yield return new object[] { "/lib/x86_64-linux-gnu/libc.so.6" };
    }

    /// <summary>readelf -wF; it exits 1 over warnings about other sections (libc's), output intact.</summary>
    private static string ReadElfFrames(string path)
    {
        var psi = new System.Diagnostics.ProcessStartInfo("readelf") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add("-wF");
        psi.ArgumentList.Add(path);
        using var p = System.Diagnostics.Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        Assert.True(stdout.Contains("Contents of the .eh_frame section"), $"readelf failed: {stderr.Result}");
        return stdout;
    }

    [LinuxTheory("readelf")]
    [MemberData(nameof(Files))]
    public void Rows_match_readelf_frames_interp(string path)
    {
        if (!File.Exists(path)) return;
        using ElfFile elf = ElfFile.Open(path);
        CallFrameInfo cfi = CallFrameInfo.Read(elf);
        Assert.True(cfi.Count > 0);
        string text = ReadElfFrames(path);
        string[]? columns = null;
        int rows = 0;
        bool inEhFrame = false;
        foreach (string line in text.Split('\n'))
        {
            if (line.StartsWith("Contents of the ", StringComparison.Ordinal)) inEhFrame = line.Contains(".eh_frame section");
            if (!inEhFrame) continue;
            if (line.Contains(" CIE ")) { columns = null; continue; } // the CIE's own table is not code
            if (line.Contains(" FDE ")) { columns = Array.Empty<string>(); continue; }
            if (columns is null) continue;
            string[] parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length == 0) continue;
            if (parts[0] == "LOC") { columns = parts; continue; }
            if (columns.Length == 0 || parts[0].Length != 16 || !ulong.TryParse(parts[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong loc)) continue;
            CfiRow? row = cfi.RowAt(loc);
            if (line.Contains('(')) { rows++; continue; } // "r9 (r9)": register-in-register cells break the columns (setcontext); rows only checked to exist
            Assert.True(row is not null, $"{path}: no row at 0x{loc:x}");
            string cfa = parts[1];
            Match m = Regex.Match(cfa, @"^([a-z0-9]+)\+(\d+)$");
            if (m.Success)
            {
                Assert.True(row!.CfaExpression is null, $"0x{loc:x}: expression instead of {cfa}");
                Assert.Equal((s_registers[m.Groups[1].Value], long.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture)), (row.CfaRegister, row.CfaOffset));
            }
            else if (cfa == "exp")
            {
                Assert.NotNull(row!.CfaExpression);
            }
            for (int i = 2; i < parts.Length && i < columns.Length; i++)
            {
                if (!s_registers.TryGetValue(columns[i], out int reg)) continue;
                CfiRule rule = row!.Rules[reg];
                string want = parts[i];
                if (want.StartsWith("c", StringComparison.Ordinal) && want.Length > 1 && want[1] is '-' or '+')
                    Assert.True(rule.Kind == CfiRuleKind.Offset && rule.Value == long.Parse(want[1..], CultureInfo.InvariantCulture), $"{path} 0x{loc:x} {columns[i]}: {rule.Kind} {rule.Value}, readelf {want}");
                else if (want == "u" && reg != 16)
                    Assert.True(rule.Kind is CfiRuleKind.SameValue or CfiRuleKind.Undefined, $"{path} 0x{loc:x} {columns[i]}: {rule.Kind}, readelf u");
                else if (want == "exp")
                    Assert.Equal(CfiRuleKind.Expression, rule.Kind);
            }
            rows++;
        }
        Assert.True(rows > 0, "readelf printed no rows");
    }
}
