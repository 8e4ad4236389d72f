using System.Globalization;
using LeakTools.Tests.Shared;
using Xunit;

namespace LeakTools.Tests;

/// <summary>Find-LeakedAllocation's allocation sites end to end: Watch-Allocation -Engine Agent
/// watches tests/fixtures/core-sites.c from another runspace of this process (so its helper host
/// is busy all along and the snapshots need another), while Find-LeakedAllocation -Id and
/// Invoke-CoreCapture | Find-LeakedAllocation read the agent's live table from their cores: each
/// leaked block names the function that allocated it, blocks leaked before the attach none; the
/// view shows the Function column and Export-Csv keeps Function and Location.</summary>
public sealed class HeapAllocationSiteCmdletTests : IDisposable
{
    private readonly PowerShellSession _ps = new();
    private readonly string _dir = Directory.CreateTempSubdirectory("leaktools-sites-cmdlet").FullName;

    public void Dispose()
    {
        _ps.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    /// <summary>Sends a command; returns the "LEAK what 0xaddr usable" lines as address -> what.</summary>
    private static Dictionary<ulong, string> Leak(FixtureProcess f, string command)
    {
        f.Send(command);
        var leaks = new Dictionary<ulong, string>();
        for (string? line; (line = f.ReadLine(TimeSpan.FromSeconds(30))) != "OK";)
        {
            Assert.NotNull(line);
            string[] p = line!.Split(' ');
            if (p[0] == "LEAK") leaks[ulong.Parse(p[2].AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture)] = p[1];
        }
        return leaks;
    }

    [LinuxFact("gcc")]
    public void While_Watch_Allocation_runs_Find_LeakedAllocation_names_the_function_of_each_leaked_block()
    {
        using FixtureProcess f = FixtureProcess.Start(HeapFixtures.CoreSites(), _dir);
        Dictionary<ulong, string> early = Leak(f, "early 2");
        var (runspace, watch) = PowerShellSession.CreateStoppable();
        using var _ = runspace;
        using var __ = watch;
        watch.AddCommand("Watch-Allocation").AddParameter("Id", f.Pid).AddParameter("Engine", "Agent").AddParameter("Expire", 3600);
        var watching = watch.BeginInvoke();
        AllocServer.WaitUntilAgent(f.Pid);
        Assert.False(watching.IsCompleted); // (enumerating watch.Streams.Error now would wait for the pipeline's end)
        Dictionary<ulong, string> leaks = Leak(f, "leak 3");
        var expected = new Dictionary<string, string> { ["alpha"] = "leak_in_alpha", ["beta"] = "leak_in_beta" };
        string csv = Path.Combine(_dir, "leaks.csv");
        try
        {
            // A helper host runs one command at a time: the watch's is busy, so the snapshot needs another.
            var find = Task.Run(() => _ps.Run("Find-LeakedAllocation -Id $target -Verbose", new Dictionary<string, object?> { ["target"] = f.Pid }));
            Assert.True(find.Wait(TimeSpan.FromSeconds(120)), "Find-LeakedAllocation -Id waited for Watch-Allocation's helper");
            var r = find.Result.NoErrors();
            var found = r.All<LeakedAllocation>().ToDictionary(l => l.Address);
            foreach (var (address, what) in leaks)
            {
                Assert.Equal(expected[what], found[address].Function);
                Assert.StartsWith("core-sites.c:", found[address].Location);
                Assert.Contains(found[address].Frames!, fr => fr.Function == expected[what]);
            }
            foreach (ulong address in early.Keys)
            {
                Assert.Null(found[address].Frames);
                Assert.Null(found[address].Function);
            }
            Assert.Contains(r.Verbose, v => v.StartsWith("Allocation sites from the agent's live table", StringComparison.Ordinal) && v.Contains("6 of the leaked blocks have one"));

            r = _ps.Run(
                "$leaks = Invoke-CoreCapture -Id $target -Destination $dir | Find-LeakedAllocation; " +
                "$leaks | Export-Csv $csv; $leaks | Format-Table | Out-String -Width 160",
                new Dictionary<string, object?> { ["target"] = f.Pid, ["dir"] = _dir, ["csv"] = csv }).NoErrors();
            string table = (string)r.Output.Single().BaseObject;
            Assert.Contains("Function", table);
            Assert.Contains("leak_in_alpha", table);
            Assert.Contains("leak_in_beta", table);
            var rows = _ps.Run("Import-Csv $csv", new Dictionary<string, object?> { ["csv"] = csv }).NoErrors().Output;
            Assert.Equal(3, rows.Count(o => (string)o.Properties["Function"].Value == "leak_in_alpha"));
            Assert.Equal(3, rows.Count(o => (string)o.Properties["Function"].Value == "leak_in_beta"));
            Assert.All(rows.Where(o => (string)o.Properties["Function"].Value is "leak_in_alpha"), o => Assert.StartsWith("core-sites.c:", (string)o.Properties["Location"].Value));
        }
        finally
        {
            watch.Stop();
        }
        Assert.Matches(@"TracerPid:\s+0\n", File.ReadAllText($"/proc/{f.Pid}/status"));
    }
}
