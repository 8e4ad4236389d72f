using System.Management.Automation;
using LeakTools.Tests.Shared;
using Xunit;

namespace LeakTools.Tests;

/// <summary>Find-LeakedAllocation and Get-HeapSummary hosted in-process, on the heap-leaks
/// known-answer program (27 leaks, 17 of them unreferenced, one C++ Circle): -Id snapshots that
/// are removed or kept, pipelines from Invoke-CoreCapture and Get-CoreDump, Group-Object and
/// Export-Csv, the views (also deserialized), and errors per target with stable ids.</summary>
public sealed class HeapCmdletTests : IDisposable
{
    private readonly PowerShellSession _ps = new();
    private readonly string _dir = Directory.CreateTempSubdirectory("leaktools-heap-cmdlet").FullName;
    private readonly FixtureProcess _fixture;

    public HeapCmdletTests()
    {
        _fixture = FixtureProcess.Start(HeapFixtures.HeapLeaks(), Path.Combine(_dir, "manifest.txt"));
    }

    public void Dispose()
    {
        _fixture.Dispose();
        _ps.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private Dictionary<string, object?> Vars(params (string, object?)[] more)
    {
        var v = new Dictionary<string, object?> { ["pid1"] = _fixture.Pid, ["dir"] = _dir };
        foreach (var (k, o) in more) v[k] = o;
        return v;
    }

    private int ManifestLeaks(string kind = "") =>
        File.ReadAllLines(Path.Combine(_dir, "manifest.txt")).Count(l => l.StartsWith("LEAK ") && l.Contains(kind));

    private string[] Cores(string folder) => Directory.GetFiles(folder, $"core.lt-heap-leaks.{_fixture.Pid}.*");

    [LinuxFact("g++")]
    public void Id_takes_a_snapshot_analyzes_it_and_removes_it_unless_KeepCore()
    {
        var r = _ps.Run("Set-Location $dir; Find-LeakedAllocation -Id $pid1", Vars()).NoErrors();
        var leaks = r.All<LeakedAllocation>().ToList();
        Assert.Equal(ManifestLeaks(), leaks.Count);
        Assert.All(leaks, l => Assert.Null(l.Core));
        Assert.All(leaks, l => Assert.Equal(_fixture.Pid, l.ProcessId));
        Assert.Empty(Cores(Path.GetTempPath()));
        Assert.Empty(Cores(_dir));

        r = _ps.Run("Set-Location $dir; Get-Process -Id $pid1 | Find-LeakedAllocation -KeepCore -Kind Unreferenced", Vars()).NoErrors();
        string kept = Assert.Single(Cores(_dir));
        Assert.Equal(ManifestLeaks("Unreferenced"), r.Output.Count);
        Assert.All(r.All<LeakedAllocation>(), l => Assert.Equal(kept, l.Core));
        Assert.All(r.All<LeakedAllocation>(), l => Assert.Equal(LeakedAllocationKind.Unreferenced, l.Kind));
        Assert.Matches(@"TracerPid:\s+0\n", File.ReadAllText($"/proc/{_fixture.Pid}/status")); // it runs on, untraced
    }

    [LinuxFact("g++")]
    public void Cores_pipe_in_by_Path_and_the_results_group_and_export()
    {
        string csv = Path.Combine(_dir, "leaks.csv");
        var r = _ps.Run(
            "$core = Invoke-CoreCapture -Id $pid1 -Destination $dir; " +
            "$l = $core | Find-LeakedAllocation; " +
            "$l | Export-Csv $csv; " +
            "$l | Group-Object Size, TypeName | Sort-Object Count -Descending",
            Vars(("csv", csv))).NoErrors();
        var groups = r.Output.Select(o => (Count: (int)o.Properties["Count"].Value, Name: (string)o.Properties["Name"].Value)).ToList();
        Assert.Equal(ManifestLeaks(), groups.Sum(g => g.Count));
        Assert.Equal((5, "72"), groups[0]); // a 3-block cycle and one 64-byte leak per thread
        Assert.Contains((1, "72, Circle"), groups);

        var rows = _ps.Run("Import-Csv $csv", Vars(("csv", csv))).NoErrors().Output;
        Assert.Equal(ManifestLeaks(), rows.Count);
        foreach (string column in new[] { "Address", "Size", "Kind", "Arena", "TypeName", "Preview", "ReferencedBy", "ChunkSize", "ProcessId", "Core" })
            Assert.NotNull(rows[0].Properties[column]);
        Assert.Single(rows, row => (string)row.Properties["TypeName"].Value == "Circle");

        var summary = _ps.Run("Get-CoreDump -Path $dir | Get-HeapSummary", Vars()).NoErrors();
        var arenas = summary.All<HeapSummary>().ToList();
        Assert.Equal(new[] { HeapArenaKind.Main, HeapArenaKind.Thread, HeapArenaKind.Thread, HeapArenaKind.Mmapped }, arenas.Select(a => a.Kind));
        Assert.Equal(3, arenas[0].FastbinChunks);
    }

    [LinuxFact("g++")]
    public void Views_show_hex_addresses_types_and_text_also_deserialized()
    {
        string xml = Path.Combine(_dir, "leaks.xml");
        var r = _ps.Run(
            "$core = Invoke-CoreCapture -Id $pid1 -Destination $dir; " +
            "$l = Find-LeakedAllocation $core.Path; $l | Export-Clixml $xml; " +
            "($l | Format-Table | Out-String -Width 200); (Import-Clixml $xml | Format-Table | Out-String -Width 200); " +
            "(Get-HeapSummary $core.Path | Out-String -Width 200)",
            Vars(("xml", xml))).NoErrors();
        string live = (string)r.Output[0].BaseObject, deserialized = (string)r.Output[1].BaseObject, summary = (string)r.Output[2].BaseObject;
        foreach (string table in new[] { live, deserialized })
        {
            Assert.Contains("Kind", table);
            Assert.Matches(@"0x[0-9a-f]{12}\s+24 Unreferenced main", table);
            Assert.Contains("|small leak......|", table);
            Assert.Contains("Circle", table);
            Assert.Contains("mmapped", table);
        }
        Assert.Contains("Heap(KiB)", summary);
        Assert.Matches(@"main\s+Main", summary);
        Assert.Matches(@"mmapped\s+Mmapped", summary);
    }

    [LinuxFact("g++")]
    public void Errors_are_per_target_with_stable_ids_and_the_rest_goes_on()
    {
        string text = Path.Combine(_dir, "notes.txt");
        File.WriteAllText(text, "not a core");
        var r = _ps.Run("$core = Invoke-CoreCapture -Id $pid1 -Destination $dir; Find-LeakedAllocation -Path (Join-Path $dir missing), $text, $core.Path",
            Vars(("text", text)));
        Assert.Equal(ManifestLeaks(), r.Output.Count);
        Assert.Equal(new[] { "CoreNotFound,LeakTools.Commands.FindLeakedAllocationCommand", "NotACore,LeakTools.Commands.FindLeakedAllocationCommand" },
            r.Errors.Select(e => e.FullyQualifiedErrorId));
        Assert.Equal(ErrorCategory.ObjectNotFound, r.Errors[0].CategoryInfo.Category);
        Assert.Equal(ErrorCategory.InvalidData, r.Errors[1].CategoryInfo.Category);
        Assert.Equal(text, r.Errors[1].TargetObject);

        var missing = _ps.Run("Get-HeapSummary -Id 999999");
        ErrorRecord e = Assert.Single(missing.Errors);
        Assert.Equal("ProcessNotFound,LeakTools.Commands.GetHeapSummaryCommand", e.FullyQualifiedErrorId);
        Assert.Equal(999999, e.TargetObject);
    }
}
