using System.Globalization;
using System.Management.Automation;
using LeakTools.Tests.Shared;
using Xunit;

namespace LeakTools.Tests;

/// <summary>Resolve-Address and Get-ElfSymbol hosted in-process.</summary>
public sealed class SymbolsCmdletTests : IClassFixture<SymbolsCmdletTests.Session>
{
    public sealed class Session : IDisposable
    {
        public PowerShellSession Ps { get; } = new();
        public void Dispose() => Ps.Dispose();
    }

    private readonly PowerShellSession _ps;

    public SymbolsCmdletTests(Session session) => _ps = session.Ps;

    private static Dictionary<string, object?> Vars(params (string, object?)[] pairs) => pairs.ToDictionary(p => p.Item1, p => p.Item2);

    private static string Binary => SymbolFixtures.Build("-O2 -g", "O2-dwarf5-pie");

    private static ulong Nm(string binary, string name) =>
        Tools.Run("nm", binary).Split('\n').Select(l => l.Split(' ')).Where(p => p.Length == 3 && p[2] == name)
            .Select(p => ulong.Parse(p[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture)).Single();

    private static int LineOf(string marker) =>
        File.ReadAllLines(Path.Combine(SymbolFixtures.SourceDir, "symbols-main.c")).Select((l, i) => (l, i)).First(x => x.l.Contains(marker)).i + 1;

    [LinuxFact("gcc", "nm", "addr2line")]
    public void Path_takes_hex_strings_and_numbers_from_arguments_and_the_pipeline()
    {
        ulong leaf = Nm(Binary, "leaf_function");
        string hex = $"0x{leaf:x}";
        var vars = Vars(("bin", Binary), ("hex", hex), ("bare", $"{leaf:x}"), ("num", leaf), ("int", (int)leaf));
        foreach (string script in new[] { "Resolve-Address -Path $bin $hex", "Resolve-Address $bare -Path $bin", "$num | Resolve-Address -Path $bin", "Resolve-Address -Path $bin -Address $int" })
        {
            StackFrame f = _ps.Run(script, vars).NoErrors().Single<StackFrame>();
            Assert.Equal("leaf_function", f.Function);
            Assert.Equal(leaf, f.Address);
            Assert.Equal(leaf, f.ModuleOffset);
            Assert.Equal(Binary, f.Module);
        }
        PeerLine expected = PeerLine.Of(Binary, leaf);
        StackFrame frame = _ps.Run("Resolve-Address -Path $bin $hex", vars).Single<StackFrame>();
        Assert.Equal(expected.Line, frame.Line);
        Assert.EndsWith("symbols-main.c", frame.File);

        // Several addresses in one call, each with its inline chain.
        var many = _ps.Run("Get-Content $list | Resolve-Address -Path $bin", Vars(("bin", Binary), ("list", WriteList(Binary)))).NoErrors();
        Assert.True(many.Output.Count >= 20);
        string table = _ps.Run("Resolve-Address -Path $bin $hex | Out-String -Width 200", vars).NoErrors().Output[0].ToString();
        Assert.Contains("O2-dwarf5-pie!leaf_function+0x0", table);
        Assert.Contains($"symbols-main.c:{expected.Line}", table);
    }

    private static string WriteList(string binary)
    {
        string path = Path.Combine(Path.GetTempPath(), $"leaktools-addresses-{Environment.ProcessId}.txt");
        File.WriteAllLines(path, Tools.Run("nm", "--defined-only", binary).Split('\n').Select(l => l.Split(' ')).Where(p => p.Length == 3 && p[1] is "T" or "t").Select(p => "0x" + p[0]));
        return path;
    }

    private sealed record PeerLine(string Function, int? Line)
    {
        public static PeerLine Of(string binary, ulong address)
        {
            string[] lines = Tools.Run("addr2line", "-f", "-e", binary, $"0x{address:x}").Split('\n');
            string location = lines[1];
            return new PeerLine(lines[0], int.TryParse(location[(location.LastIndexOf(':') + 1)..].Split(' ')[0], out int n) ? n : null);
        }
    }

    [LinuxFact("gcc")]
    public void Id_resolves_runtime_addresses_and_return_addresses()
    {
        using var fx = FixtureProcess.Start(SymbolFixtures.Build("-O2 -g", "live-pie"));
        var vars = Vars(("id", fx.Pid), ("leaf", fx.Hex("leaf")), ("ret", fx.Hex("caller_ret")));
        StackFrame leaf = _ps.Run("Resolve-Address -Id $id $leaf", vars).NoErrors().Single<StackFrame>();
        Assert.Equal("leaf_function", leaf.Function);
        Assert.Equal(fx.Hex("leaf"), leaf.Address);

        StackFrame caller = _ps.Run("Resolve-Address -Id $id $ret -ReturnAddress", vars).NoErrors().Output.Select(o => (StackFrame)o.BaseObject).Last();
        Assert.Equal("calls_leaf", caller.Function);
        Assert.Equal(LineOf("CALL_LINE"), caller.Line);

        StackFrame nowhere = _ps.Run("Resolve-Address -Id $id 0x10", vars).NoErrors().Single<StackFrame>();
        Assert.Equal("", nowhere.Module);
        Assert.Null(nowhere.Function);
    }

    [LinuxFact]
    public void Bad_input_gives_errors_with_stable_ids()
    {
        string notElf = Path.Combine(Path.GetTempPath(), $"leaktools-notelf-{Environment.ProcessId}.txt");
        File.WriteAllText(notElf, "plain text, long enough to hold an ELF header if it were one......");
        try
        {
            var r = _ps.Run("Resolve-Address -Path $p 0x10", Vars(("p", notElf)));
            var e = Assert.Single(r.Errors);
            Assert.Equal("NotAnElfFile,LeakTools.Commands.ResolveAddressCommand", e.FullyQualifiedErrorId);
            Assert.Equal(ErrorCategory.InvalidData, e.CategoryInfo.Category);
            Assert.Equal(notElf, e.TargetObject);

            var missing = Assert.Single(_ps.Run("Resolve-Address -Path /nonexistent/x 0x10").Errors);
            Assert.Equal("FileNotFound,LeakTools.Commands.ResolveAddressCommand", missing.FullyQualifiedErrorId);
            Assert.Equal(ErrorCategory.ObjectNotFound, missing.CategoryInfo.Category);

            var pid = Assert.Single(_ps.Run("Resolve-Address -Id 999999 0x10").Errors);
            Assert.Equal("ProcessNotFound,LeakTools.Commands.ResolveAddressCommand", pid.FullyQualifiedErrorId);

            var bad = _ps.Run("'zz' | Resolve-Address -Path $p", Vars(("p", notElf)));
            var binding = Assert.Single(bad.Errors);
            Assert.Equal("ParameterArgumentTransformationError,LeakTools.Commands.ResolveAddressCommand", binding.FullyQualifiedErrorId);
            Assert.Contains("not an address", binding.Exception.Message);

            var elf = Assert.Single(_ps.Run("Get-ElfSymbol $p", Vars(("p", notElf))).Errors);
            Assert.Equal("NotAnElfFile,LeakTools.Commands.GetElfSymbolCommand", elf.FullyQualifiedErrorId);
        }
        finally
        {
            File.Delete(notElf);
        }
    }

    [LinuxFact("gcc", "nm")]
    public void Unresolved_frames_from_the_pipeline_are_resolved_and_resolved_ones_pass_through()
    {
        ulong leaf = Nm(Binary, "leaf_function");
        var frames = new[]
        {
            new StackFrame { Address = 0x7f0000001000, Module = Binary, ModuleOffset = leaf },
            new StackFrame { Address = 0x1234, Module = Binary, ModuleOffset = 0x1234, Function = "already_named" },
            new StackFrame { Address = 0x99 },
        };
        var r = _ps.Run("$frames | Resolve-Address", Vars(("frames", frames))).NoErrors();
        var output = r.All<StackFrame>().ToList();
        Assert.Equal(3, output.Count);
        Assert.Equal("leaf_function", output[0].Function);
        Assert.Equal(0x7f0000001000UL, output[0].Address);
        Assert.Same(frames[1], output[1]);
        Assert.Same(frames[2], output[2]);

        // Deserialized frames (Import-Clixml, remoting) work too.
        var de = _ps.Run("$frames[0] | Export-Clixml $f; Import-Clixml $f | Resolve-Address", Vars(("frames", frames), ("f", Path.GetTempFileName()))).NoErrors();
        Assert.Equal("leaf_function", Assert.IsType<StackFrame>(de.Output.Single().BaseObject).Function);
    }

    [LinuxFact("gcc", "nm")]
    public void Get_ElfSymbol_lists_what_nm_lists()
    {
        var ours = _ps.Run("Get-ElfSymbol $bin -DefinedOnly | Where-Object Table -eq '.symtab'", Vars(("bin", Binary))).NoErrors().All<ElfSymbol>()
            .Where(s => s.Type is not ("FILE" or "SECTION")).Select(s => $"{s.Address:x16} {s.Name}").ToHashSet();
        var nm = Tools.Run("nm", "--defined-only", Binary).Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Split(' ')).Where(p => p.Length == 3 && p[1] != "a").Select(p => $"{p[0]} {p[2]}").ToHashSet();
        Assert.Subset(ours, nm);
        Assert.Subset(nm, ours);

        var dynamic = _ps.Run("Get-ElfSymbol $bin -Dynamic", Vars(("bin", Binary))).NoErrors().All<ElfSymbol>().Select(s => s.Name).ToHashSet();
        var nmD = Tools.Run("nm", "-D", Binary).Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Trim().Split(' ').Last().Split('@')[0]).ToHashSet();
        Assert.Equal(nmD, dynamic);

        var leaf = _ps.Run("Get-ElfSymbol $bin -Name 'LEAF_*' -Type FUNC", Vars(("bin", Binary))).NoErrors().All<ElfSymbol>().ToList();
        Assert.Equal("leaf_function", Assert.Single(leaf).Name);
        Assert.Equal("LOCAL", leaf[0].Binding);
        Assert.Equal(".text", leaf[0].Section);
        string view = _ps.Run("Get-ElfSymbol $bin -Name malloc@plt | Out-String", Vars(("bin", Binary))).NoErrors().Output[0].ToString();
        Assert.Contains("malloc@plt", view);
        Assert.Contains(".plt", view);
    }
}
