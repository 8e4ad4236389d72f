using LeakTools.Core.Heap;
using LeakTools.Core.Hosting;
using LeakTools.Tests.Shared;
using Xunit;

namespace LeakTools.Core.Tests.Heap;

/// <summary>The C++ type of a leaked object when the executable has no symbols (stripped: named
/// from the RTTI its vtable points at) and when it is gone from the disk (-ExecutablePath).</summary>
public sealed class HeapTypeNameTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("leaktools-heaptype-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>Runs a copy of heap-leaks; <paramref name="prepare"/> may strip it, <paramref name="whileRunning"/> delete it.</summary>
    private (string Core, ulong Circle) Run(string name, Action<string>? prepare = null, Action<string>? whileRunning = null)
    {
        string exe = Path.Combine(_dir, name);
        File.Copy(HeapFixtures.HeapLeaks(), exe);
        prepare?.Invoke(exe);
        string manifest = Path.Combine(_dir, name + ".txt");
        using FixtureProcess f = FixtureProcess.Start(exe, manifest);
        whileRunning?.Invoke(exe);
        using HelperClient helper = HelperClient.Start();
        string core = HeapLeaksRun.TakeSnapshot(helper, new SnapshotRequest { Pid = f.Pid, Destination = _dir });
        ManifestEntry circle = HeapManifest.Read(manifest).Leaks.Single(e => e.Type == "Circle");
        return (core, circle.Address);
    }

    private static Dictionary<ulong, string?> TypeNames(string core, string? executable = null)
    {
        using CoreHeapAnalysis a = CoreHeapAnalysis.Open(core, new HeapAnalysisOptions { ExecutablePath = executable });
        return a.FindLeaks().ToDictionary(l => l.Address, l => l.TypeName);
    }

    [LinuxFact("g++", "strip", "readelf")]
    public void A_stripped_executable_still_names_the_type_through_its_RTTI()
    {
        var (core, circle) = Run("lt-heap-strip", exe =>
        {
            Tools.Run("strip", "--strip-all", exe);
            Assert.DoesNotContain("Circle", Tools.Run("readelf", "-sW", "--dyn-syms", exe)); // no vtable symbol left
        });
        Dictionary<ulong, string?> names = TypeNames(core);
        Assert.Equal("Circle", names[circle]);
        Assert.Single(names.Values, n => n is not null);
    }

    [LinuxFact("g++")]
    public void ExecutablePath_stands_in_for_an_executable_gone_from_the_disk()
    {
        var (core, circle) = Run("lt-heap-gone", whileRunning: File.Delete);
        Assert.Null(TypeNames(core)[circle]);
        Assert.Equal("Circle", TypeNames(core, HeapFixtures.HeapLeaks())[circle]);
    }
}
