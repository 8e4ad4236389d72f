using System.Management.Automation;
using LeakTools.Tests.Shared;
using Xunit;

namespace LeakTools.Tests;

/// <summary>Get-ProcessPss, Get-ProcessMemoryMap and Get-SystemMemory hosted in-process.</summary>
public sealed class ProcFsCmdletTests : IClassFixture<ProcFsCmdletTests.Session>, IDisposable
{
    public sealed class Session : IDisposable
    {
        public PowerShellSession Ps { get; } = new();
        public void Dispose() => Ps.Dispose();
    }

    // A name longer than comm's 15 characters: the kernel keeps "leaktools-touch".
    private const string LongName = "leaktools-touch-memory-long";
    private readonly PowerShellSession _ps;
    private readonly string _tempDir = Directory.CreateTempSubdirectory("leaktools-test").FullName;

    public ProcFsCmdletTests(Session session) => _ps = session.Ps;

    public void Dispose() => Directory.Delete(_tempDir, recursive: true);

    private static FixtureProcess StartLongNamed(string kib = "2048") =>
        FixtureProcess.Start(FixtureBuilder.Build("touch-memory.c", "-O0 -g", LongName), kib);

    private static Dictionary<string, object?> Vars(params (string, object?)[] pairs) => pairs.ToDictionary(p => p.Item1, p => p.Item2);

    [LinuxFact("gcc")]
    public void Name_matches_the_full_executable_name_beyond_comm_and_wildcards_ignore_case()
    {
        using var fx = StartLongNamed();
        Assert.Equal("leaktools-touch", File.ReadAllText($"/proc/{fx.Pid}/comm").Trim());

        var full = _ps.Run($"Get-ProcessPss {LongName}").NoErrors();
        var m = Assert.Single(full.All<ProcessMemory>(), x => x.Id == fx.Pid);
        Assert.Equal(LongName, m.Name);
        Assert.True(m.Uss >= fx.Long("bytes") - 4096);

        var wild = _ps.Run("Get-ProcessPss 'LEAKTOOLS-TOUCH-M*'").NoErrors();
        Assert.Contains(wild.All<ProcessMemory>(), x => x.Id == fx.Pid);
        var byComm = _ps.Run("Get-ProcessPss leaktools-touch").NoErrors();
        Assert.Contains(byComm.All<ProcessMemory>(), x => x.Id == fx.Pid);
    }

    [LinuxFact("gcc")]
    public void A_missing_id_is_a_non_terminating_ProcessNotFound_and_other_targets_go_on()
    {
        using var fx = StartLongNamed();
        var r = _ps.Run("Get-ProcessPss -Id 999999, $target", Vars(("target", fx.Pid)));
        Assert.Equal(fx.Pid, r.Single<ProcessMemory>().Id);
        var error = Assert.Single(r.Errors);
        Assert.Equal("ProcessNotFound,LeakTools.Commands.GetProcessPssCommand", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.ObjectNotFound, error.CategoryInfo.Category);
        Assert.Equal(999999, error.TargetObject);
        Assert.Contains("999999", error.Exception.Message);
    }

    [LinuxFact]
    public void A_numeric_name_gets_a_hint_to_use_Id()
    {
        var r = _ps.Run("Get-ProcessPss 31999");
        var error = Assert.Single(r.Errors);
        Assert.Equal("ProcessNotFound,LeakTools.Commands.GetProcessPssCommand", error.FullyQualifiedErrorId);
        Assert.Contains("-Id 31999", error.Exception.Message);
        Assert.Empty(_ps.Run("Get-ProcessPss 'nosuchprocess*'").NoErrors().Output); // wildcards: no error
    }

    [LinuxFact]
    public void Kernel_threads_are_skipped_with_a_verbose_message()
    {
        var r = _ps.Run("Get-ProcessPss -Id 2 -Verbose").NoErrors();
        Assert.Empty(r.Output);
        Assert.Contains(r.Verbose, v => v.Contains("kernel thread"));
        var all = _ps.Run("Get-ProcessPss").All<ProcessMemory>().ToList();
        Assert.DoesNotContain(all, x => x.Id == 2);
        Assert.Contains(all, x => x.Id == Environment.ProcessId);
    }

    [LinuxFact("gcc")]
    public void Pipeline_by_Id_gives_each_process_its_own_mappings_once()
    {
        using var a = StartLongNamed("1024");
        using var b = StartLongNamed("1024");
        var r = _ps.Run($"Get-ProcessPss {LongName} | Get-ProcessMemoryMap").NoErrors();
        var maps = r.All<MemoryMapping>().ToList();
        var direct = _ps.Run("Get-ProcessMemoryMap -Id $a", Vars(("a", a.Pid))).NoErrors().All<MemoryMapping>().ToList();
        Assert.Equal(direct.Count, maps.Count(m => m.ProcessId == a.Pid));
        Assert.Equal(maps.Count, maps.Select(m => (m.ProcessId, m.Address)).Distinct().Count());
        Assert.Contains(maps, m => m.ProcessId == b.Pid && m.Address == b.Hex("addr"));
    }

    [LinuxFact("gcc")]
    public void Process_objects_from_Get_Process_are_accepted()
    {
        using var fx = StartLongNamed();
        var r = _ps.Run("Get-Process -Id $target | Get-ProcessPss", Vars(("target", fx.Pid))).NoErrors();
        Assert.Equal(fx.Pid, r.Single<ProcessMemory>().Id);
    }

    [LinuxFact("gcc")]
    public void Views_render_after_Export_and_Import_Clixml()
    {
        using var fx = StartLongNamed();
        string xml = Path.Combine(_tempDir, "pss.xml");
        string mapXml = Path.Combine(_tempDir, "map.xml");
        string memXml = Path.Combine(_tempDir, "mem.xml");
        _ps.Run("Get-ProcessPss -Id $target | Export-Clixml $xml; Get-ProcessMemoryMap -Id $target | Export-Clixml $mapXml; Get-SystemMemory | Export-Clixml $memXml",
            Vars(("target", fx.Pid), ("xml", xml), ("mapXml", mapXml), ("memXml", memXml))).NoErrors();
        string live = (string)_ps.Run("Get-ProcessPss -Id $target | Out-String -Width 200", Vars(("target", fx.Pid))).Output[0].BaseObject;
        string table = (string)_ps.Run("Import-Clixml $xml | Out-String -Width 200", Vars(("xml", xml))).NoErrors().Output[0].BaseObject;
        Assert.Contains("PSS(MiB)", live);
        Assert.Contains("PSS(MiB)", table);
        Assert.Contains(LongName, table);
        string maps = (string)_ps.Run("Import-Clixml $mapXml | Out-String -Width 200", Vars(("mapXml", mapXml))).NoErrors().Output[0].BaseObject;
        Assert.Contains("Size(K)", maps);
        Assert.Contains(fx.Values["addr"][2..], maps); // address shown in hex as pmap does
        string mem = (string)_ps.Run("Import-Clixml $memXml | Out-String", Vars(("memXml", memXml))).NoErrors().Output[0].BaseObject;
        Assert.Contains("CommittedAs", mem);
        Assert.Contains("MiB", mem);
    }

    [LinuxFact("gcc")]
    public void Objects_round_trip_through_Export_Csv_with_plain_columns()
    {
        using var fx = StartLongNamed();
        string csv = Path.Combine(_tempDir, "pss.csv");
        string mapCsv = Path.Combine(_tempDir, "map.csv");
        var r = _ps.Run(@"
            $m = Get-ProcessPss -Id $target
            $m | Export-Csv -Path $csv
            Get-ProcessMemoryMap -Id $target | Export-Csv -Path $mapCsv
            $row = Import-Csv $csv
            [pscustomobject]@{ Pss = $m.Pss; CsvPss = [long]$row.Pss; Name = $row.Name; Columns = ($row.PSObject.Properties.Name -join ',') }
            (Import-Csv $mapCsv | Where-Object { [uint64]$_.Address -eq $addr }).Fields
        ", Vars(("target", fx.Pid), ("csv", csv), ("mapCsv", mapCsv), ("addr", fx.Hex("addr")))).NoErrors();
        dynamic row = r.Output[0];
        Assert.Equal((long)row.Pss, (long)row.CsvPss);
        Assert.Equal(LongName, (string)row.Name);
        string columns = row.Columns;
        foreach (string c in new[] { "Id", "Name", "CommandLine", "User", "Pss", "Rss", "Uss", "Swap", "Timestamp" }) Assert.Contains(c, columns.Split(','));
        Assert.Contains("Rss=", (string)r.Output[1].BaseObject);
    }

    [LinuxFact]
    public void Time_parameters_take_seconds_not_ticks()
    {
        var r = _ps.Run(@"
            function Test-Duration { param([LeakTools.Commands.DurationTransformation()][TimeSpan] $Duration) $Duration }
            (Test-Duration 10).TotalSeconds
            (Test-Duration 0.5).TotalMilliseconds
            (Test-Duration '5m').TotalSeconds
            (Test-Duration ([TimeSpan]::FromMinutes(2))).TotalSeconds
        ").NoErrors();
        Assert.Equal(new[] { 10.0, 500.0, 300.0, 120.0 }, r.Output.Select(o => Convert.ToDouble(o.BaseObject)));
        var bad = _ps.Run("function T { param([LeakTools.Commands.DurationTransformation()][TimeSpan] $D) $D }; T 'soon'");
        Assert.NotNull(bad.Terminating ?? (object?)bad.Errors.FirstOrDefault());
    }

    [LinuxFact]
    public void System_memory_is_one_object_with_every_meminfo_field()
    {
        var r = _ps.Run("Get-SystemMemory").NoErrors();
        var m = r.Single<SystemMemory>();
        Assert.True(m.Total > 0);
        Assert.Equal(m.Fields["MemTotal"], m.Total);
        Assert.True(m.Fields.Count >= 30);
    }
}
